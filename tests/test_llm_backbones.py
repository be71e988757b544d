"""Backbones against a scripted OpenAI-compatible server (tests/llm_server.py): the real ``openai`` client
talks HTTP to it, so retries, timeouts and parsing are the real ones. Also the response cache and the
accounting of calls. Never the network."""

from __future__ import annotations

import gzip
import json
import shlex
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from pathlib import Path

import pytest
from llm_server import Answer, Raw, ScriptedServer, Status, Stream, completion

from learnact.engine.llm import (
    CALLS,
    BackboneConfigError,
    CachedBackbone,
    CacheError,
    CallLog,
    ChatMessage,
    ChatRequest,
    ChatResponse,
    Ledger,
    LLMError,
    ModelDescription,
    OpenAIBackbone,
    Price,
    PriceFileError,
    PriceTable,
    RecordingBackbone,
    ResponseCache,
    cache_key,
    default_cache_dir,
    make_backbone,
)
from learnact.engine.llm.cache import DB_NAME
from learnact.engine.llm.openai_backbone import MAX_ANSWER_BYTES, MAX_BODY_BYTES

FAST = {"timeout_s": 2.0, "max_retries": 2}
QUICK_RETRY = {"retry-after-ms": "10"}  # a server's short Retry-After keeps retry tests fast


def ask(text: str = "hi", **fields: object) -> ChatRequest:
    return ChatRequest(model="gpt-4o-mini", messages=(ChatMessage(role="user", content=text),), **fields)


def backbone(server: ScriptedServer, **options: object) -> OpenAIBackbone:
    return OpenAIBackbone("gpt-4o-mini", base_url=server.base_url, **{**FAST, **options})


@pytest.fixture(autouse=True)
def no_openai_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)


# --- the OpenAI-compatible backbone -------------------------------------------------------------------


def test_an_answer_with_its_usage() -> None:
    with ScriptedServer([Answer("pickup('b1')", prompt_tokens=31, completion_tokens=7)]) as server:
        response = backbone(server).complete(ask())
    assert response.text == "pickup('b1')"
    assert response.finish_reason == "stop"
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (31, 7)
    assert server.received[0].body["messages"] == [{"role": "user", "content": "hi"}]


def test_every_parameter_reaches_the_server() -> None:
    with ScriptedServer() as server:
        llm = backbone(server)
        llm.complete(ask(temperature=0.7, max_tokens=17, stop=("\n", "END"), seed=3))
        llm.complete(ask(max_tokens=None))
    sent, bare = server.received[0].body, server.received[1].body
    assert sent["model"] == "gpt-4o-mini"
    assert (sent["temperature"], sent["max_tokens"], sent["stop"], sent["seed"]) == (0.7, 17, ["\n", "END"], 3)
    assert bare["temperature"] == 0.0 and "max_tokens" not in bare and "stop" not in bare and "seed" not in bare


def test_settings_from_the_usual_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    with ScriptedServer() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        llm = make_backbone(ModelDescription(model="gpt-4o-mini", cache=False))
        assert llm.complete(ask()).text == "answer 1"
    assert server.received[0].headers["authorization"] == "Bearer sk-test"
    assert llm.identity == f"openai-compatible {server.base_url}"


def test_azure_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    with ScriptedServer() as server:
        monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", server.base_url.removesuffix("/v1"))
        monkeypatch.setenv("AZURE_OPENAI_API_KEY", "azure-key")
        monkeypatch.setenv("OPENAI_API_VERSION", "2024-06-01")
        llm = make_backbone(ModelDescription(model="my-deployment", cache=False))
        assert llm.complete(ask()).text == "answer 1"
    assert server.received[0].path == "/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-06-01"
    assert server.received[0].headers["api-key"] == "azure-key"
    assert llm.identity.startswith("azure-openai http://127.0.0.1:")


def test_retries_then_success() -> None:
    script = [Status(500), Status(429, "slow down", QUICK_RETRY), Answer("done")]
    with ScriptedServer(script) as server:
        assert backbone(server).complete(ask()).text == "done"
    assert len(server.received) == 3
    assert [r.headers["x-stainless-retry-count"] for r in server.received] == ["0", "1", "2"]


def test_retries_exhausted_is_an_llm_error_with_the_reason() -> None:
    with ScriptedServer([Status(503, "overloaded", QUICK_RETRY)] * 3) as server:
        with pytest.raises(LLMError) as caught:
            backbone(server).complete(ask())
    assert len(server.received) == 3
    assert "HTTP 503 after 3 tries" in caught.value.reason and "overloaded" in caught.value.reason


def test_retry_after_is_honoured() -> None:
    with ScriptedServer([Status(429, "rate limited", {"Retry-After": "1"}), Answer("done")]) as server:
        assert backbone(server).complete(ask()).text == "done"
    waited = server.received[1].at - server.received[0].at
    assert waited >= 0.9


def test_a_client_error_is_not_retried() -> None:
    with ScriptedServer([Status(400, "bad model")]) as server:
        with pytest.raises(LLMError, match="HTTP 400 .*bad model"):
            backbone(server).complete(ask())
    assert len(server.received) == 1


def test_a_retry_after_longer_than_the_client_waits_says_so() -> None:
    with ScriptedServer([Status(429, "slow down", {"Retry-After": "3600"})]) as server:
        with pytest.raises(
            LLMError, match=r"HTTP 429 \(not retried: the server asks to wait 3600 s, more than the 120 s"
        ):
            backbone(server).complete(ask())
    assert len(server.received) == 1


def test_a_client_error_says_it_was_not_retried() -> None:
    with ScriptedServer([Status(401, "no such key")]) as server:
        with pytest.raises(LLMError, match=r"HTTP 401 \(not retried\): .*no such key") as caught:
            backbone(server).complete(ask())
    assert "tries" not in str(caught.value)


def test_a_timeout_is_retried_then_reported() -> None:
    with ScriptedServer([Answer("late", delay_s=1.0), Answer("on time")]) as server:
        assert backbone(server, timeout_s=0.3, max_retries=1).complete(ask()).text == "on time"
    with ScriptedServer([Answer("late", delay_s=1.0)] * 2) as server:
        with pytest.raises(LLMError, match=r"no complete answer within 0.3 s after 2 tries"):
            backbone(server, timeout_s=0.3, max_retries=1).complete(ask())
    assert len(server.received) == 2


def test_no_server_is_a_connection_error() -> None:
    with ScriptedServer() as server:
        url = server.base_url
    with pytest.raises(LLMError, match="cannot connect to http://127.0.0.1"):
        OpenAIBackbone("m", base_url=url, timeout_s=1.0, max_retries=0).complete(ask())


@pytest.mark.parametrize(
    ("step", "reason"),
    [
        (Raw(b'{"choices": [{"message": '), "the answer is not JSON"),
        (Raw(b"<html>busy</html>", "text/html"), "the answer is not JSON"),
        (Raw(b'{"choices": []}'), "the answer has no choices"),
        (Raw(b'{"object": "chat.completion"}'), "not a chat completion (choices: Field required)"),
        (Raw(b'{"choices": [{"message": {"content": 5}}]}'), "not a chat completion (choices.0.message.content"),
        (Raw(b"[1, 2]"), "not a chat completion (the body"),
        (Answer(None, finish_reason="tool_calls"), "the answer has no text (finish reason 'tool_calls')"),
    ],
)
def test_an_unusable_answer_is_an_llm_error(step: Answer | Raw, reason: str) -> None:
    with ScriptedServer([step]) as server:
        with pytest.raises(LLMError) as caught:
            backbone(server).complete(ask())
    assert reason in caught.value.reason
    assert len(server.received) == 1


# --- a hostile server: drips, endless and inflating bodies, echoed secrets, JSON bombs ------------------


def test_a_server_dripping_bytes_meets_one_deadline_per_request() -> None:
    # A byte every 0.2 s keeps every read under the 1 s timeout; the request still ends at its deadline.
    drip = Stream(b" ", count=1_000, interval_s=0.2)
    with ScriptedServer([drip, drip]) as server:
        started = time.monotonic()
        with pytest.raises(LLMError, match=r"no complete answer within 1 s after 2 tries"):
            backbone(server, timeout_s=1.0, max_retries=1).complete(ask())
    assert time.monotonic() - started < 6  # two deadlines of 1 s and the client's back-off, not 200 s


def test_a_deadline_leaves_a_slow_but_complete_answer_alone() -> None:
    body = json.dumps(completion(Answer("slow but whole"))).encode()
    with ScriptedServer([Stream(b" ", count=5, interval_s=0.1, then=body)]) as server:  # whitespace, then JSON
        assert backbone(server, timeout_s=2.0, max_retries=0).complete(ask()).text == "slow but whole"


def peak_memory_refusing(step: Raw | Stream) -> int:
    """The peak of Python's allocations while a request answered by ``step`` is refused at the body cap."""
    with ScriptedServer([step]) as server:
        tracemalloc.start()
        try:
            with pytest.raises(LLMError, match=r"larger than 8,388,608 bytes \(counted after decompression"):
                backbone(server, max_retries=0).complete(ask())
        finally:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    return peak


def test_an_endless_chunked_body_is_refused_at_the_cap_while_it_streams() -> None:
    assert peak_memory_refusing(Stream(b"x" * 65_536, count=24_000)) < 4 * MAX_BODY_BYTES  # 1.5 GiB if read whole


def test_a_gzip_bomb_is_refused_counting_inflated_bytes() -> None:
    bomb = gzip.compress(b" " * (200 * 1024 * 1024))  # 200 KB that inflate to 200 MiB
    assert len(bomb) < 1_000_000
    assert peak_memory_refusing(Raw(bomb, headers={"Content-Encoding": "gzip"})) < 4 * MAX_BODY_BYTES


def test_a_gzip_answer_within_the_cap_is_read() -> None:
    body = gzip.compress(json.dumps(completion(Answer("compressed"))).encode())
    with ScriptedServer([Raw(body, headers={"Content-Encoding": "gzip"})]) as server:
        assert backbone(server).complete(ask()).text == "compressed"


def test_an_encoding_not_asked_for_is_refused() -> None:
    with ScriptedServer([Raw(b"\x00\x01", headers={"Content-Encoding": "br"})]) as server:
        with pytest.raises(LLMError, match="encoded as 'br'"):
            backbone(server, max_retries=0).complete(ask())


def test_a_server_echoing_the_key_never_puts_it_in_a_record(tmp_path: Path) -> None:
    secret = "sk-proj-SECRET0123456789"
    echo = Status(401, "bad key in header: {authorization}", echo_headers=True)
    ledger = Ledger(sink=CallLog(tmp_path).append)
    with ScriptedServer([echo, Status(502, "upstream said Bearer other-token-42", echo_headers=False)]) as server:
        client = RecordingBackbone(backbone(server, api_key=secret, max_retries=0), ledger)
        with pytest.raises(LLMError) as first:
            client.complete(ask())
        with pytest.raises(LLMError) as second:
            client.complete(ask())
    assert server.received[0].headers["authorization"] == f"Bearer {secret}"  # the server did get it
    assert "HTTP 401 (not retried): Error code: 401 - bad key in header: Bearer [redacted]" in str(first.value)
    assert "Bearer [redacted]" in str(second.value) and "other-token-42" not in str(second.value)
    log = (tmp_path / CALLS).read_text()
    assert secret not in log and "other-token-42" not in log and "[redacted]" in log


@pytest.mark.parametrize(
    "url",
    [
        "http://user:SECRET@127.0.0.1:1/v1",
        "http://127.0.0.1:1/v1?api-key=SECRET",
        "http://127.0.0.1:1/v1#SECRET",
    ],
)
def test_credentials_in_the_base_url_are_refused(url: str) -> None:
    with pytest.raises(BackboneConfigError, match="credentials, a query or a fragment") as caught:
        OpenAIBackbone("m", base_url=url)
    assert "SECRET" not in str(caught.value)


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/v1", "127.0.0.1:8080", "http:///v1", "http://h:port/v1"])
def test_a_base_url_that_is_not_http_is_refused(url: str) -> None:
    with pytest.raises(BackboneConfigError, match="base URL"):
        OpenAIBackbone("m", base_url=url)


@pytest.mark.parametrize(
    "body",
    [
        b'{"choices": [], "usage": {"prompt_tokens": ' + b"9" * 5_000 + b"}}",
        b"[" * 100_000 + b"]" * 100_000,
    ],
    ids=["a 5000-digit integer", "a 100000-deep array"],
)
def test_json_bombs_are_model_errors(body: bytes) -> None:
    with ScriptedServer([Raw(body)]) as server:
        with pytest.raises(LLMError, match="the answer is not JSON learnact reads"):
            backbone(server).complete(ask())


def test_absurd_token_counts_are_clamped() -> None:
    with ScriptedServer([Answer("ok", prompt_tokens=10**30, completion_tokens=-5)]) as server:
        usage = backbone(server).complete(ask()).usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (2**31 - 1, 0)


def test_a_huge_answer_is_cut() -> None:
    with ScriptedServer([Answer("x" * 200_000)]) as server:
        text = backbone(server).complete(ask()).text
    assert len(text.encode()) <= MAX_ANSWER_BYTES and text.endswith("bytes]") and text.startswith("xxx")


def test_no_key_no_server_says_what_to_set() -> None:
    with pytest.raises(BackboneConfigError) as caught:
        make_backbone(ModelDescription(model="gpt-4o", cache=False))
    message = str(caught.value)
    assert "OPENAI_API_KEY" in message and "`base_url`" in message and "`model` local" in message


def test_local_without_its_extra_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "learnact.engine.llm.local", None)  # importing it raises ImportError
    with pytest.raises(LLMError, match=r"pip install -e '\.\[local\]'"):
        make_backbone(ModelDescription(model="local", cache=False))


# --- the response cache ---------------------------------------------------------------------------------


def test_a_repeated_request_makes_no_request(tmp_path: Path) -> None:
    with ScriptedServer() as server:
        llm = CachedBackbone(backbone(server), ResponseCache(tmp_path))
        first = llm.complete(ask(seed=1))
        again = llm.complete(ask(seed=1))
        assert len(server.received) == 1 and again.model_dump() == first.model_dump()  # the same answer
        assert again.cached and not first.cached  # the cache says which one it gave
        other = llm.complete(ask(seed=2))  # another seed is another request
        assert other.text != first.text and not other.cached
        assert len(server.received) == 2
        # a new cache object on the same folder (a new run) answers too
        reopened = CachedBackbone(backbone(server), ResponseCache(tmp_path)).complete(ask(seed=1))
        assert reopened.model_dump() == first.model_dump() and reopened.cached
        assert len(server.received) == 2


def test_the_cached_flag_is_the_caches_and_is_stored_nowhere(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path)
    # A row as learnact stored answers before the flag existed, and one stored by an answer that claims the flag.
    before = '{"text":"stored before","finish_reason":"stop","usage":{"prompt_tokens":3,"completion_tokens":2}}'
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        db.execute("INSERT INTO responses VALUES (?, ?, 0)", (cache_key("server", ask("before")), before))
    cache.put("server", ask("claims"), ChatResponse(text="claims", cached=True))
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        stored = [json.loads(value) for (value,) in db.execute("SELECT value FROM responses")]
    assert [sorted(value) for value in stored] == [["finish_reason", "text", "usage"]] * 2
    old = cache.get("server", ask("before"))
    assert old is not None and old.cached and old.text == "stored before" and old.usage.completion_tokens == 2
    assert ChatResponse.model_validate_json(ChatResponse(text="a", cached=True).model_dump_json()).cached is False
    cache.close()


def test_the_key_is_the_whole_request() -> None:
    base = ask()
    keys = {
        cache_key("openai-compatible http://a/v1", base),
        cache_key("openai-compatible http://b/v1", base),
        cache_key("openai-compatible http://a/v1", base.model_copy(update={"model": "gpt-4o"})),
        cache_key("openai-compatible http://a/v1", ask("other")),
        cache_key("openai-compatible http://a/v1", ask(temperature=0.5)),
        cache_key("openai-compatible http://a/v1", ask(max_tokens=10)),
        cache_key("openai-compatible http://a/v1", ask(stop=("\n",))),
        cache_key("openai-compatible http://a/v1", ask(seed=0)),
    }
    assert len(keys) == 8
    assert cache_key("x", ask(temperature=0)) == cache_key("x", ask(temperature=0.0))


def test_errors_are_not_cached(tmp_path: Path) -> None:
    with ScriptedServer([Status(400)]) as server:
        llm = CachedBackbone(backbone(server), ResponseCache(tmp_path))
        with pytest.raises(LLMError):
            llm.complete(ask())
        assert llm.complete(ask()).text == "answer 2"
        assert len(server.received) == 2


def test_the_cache_from_two_threads(tmp_path: Path) -> None:
    requests = [ask(f"q{i}") for i in range(6)]
    with ScriptedServer(responder=lambda body: Answer("re " + body["messages"][0]["content"])) as server:
        cache = ResponseCache(tmp_path)
        llm = CachedBackbone(backbone(server), cache)
        answers: dict[tuple[int, int], str] = {}
        errors: list[BaseException] = []

        def work(worker: int, part: list[ChatRequest]) -> None:
            try:
                for i, request in enumerate(part):
                    answers[worker, i] = llm.complete(request).text
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

        def run_two(parts: list[list[ChatRequest]]) -> None:
            threads = [threading.Thread(target=work, args=(n, part)) for n, part in enumerate(parts)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert not errors

        run_two([requests[:3], requests[3:]])  # two writers at once
        assert len(server.received) == 6 and len(cache) == 6
        run_two([requests, list(reversed(requests))])  # every answer from the cache, in both threads
        assert len(server.received) == 6
        assert answers[0, 5] == answers[1, 0] == "re q5"
        cache.close()


def test_workers_missing_on_the_same_request_send_it_once(tmp_path: Path) -> None:
    release = threading.Event()

    def slow_answer(body: dict) -> Answer:
        release.wait(10)  # every worker has missed by the time the first answer comes back
        return Answer("the answer")

    with ScriptedServer(responder=slow_answer) as server:
        llm = CachedBackbone(backbone(server), ResponseCache(tmp_path))
        answers: list[ChatResponse] = []
        threads = [threading.Thread(target=lambda: answers.append(llm.complete(ask("same")))) for _ in range(4)]
        for thread in threads:
            thread.start()
        while not server.received:
            threading.Event().wait(0.01)
        release.set()
        for thread in threads:
            thread.join()
        assert len(server.received) == 1
        assert sorted(answer.cached for answer in answers) == [False, True, True, True]
        assert {answer.text for answer in answers} == {"the answer"}
        assert not llm._asking  # no lock left behind


def test_the_cache_from_another_process(tmp_path: Path) -> None:
    with ScriptedServer() as server:
        llm = CachedBackbone(backbone(server), ResponseCache(tmp_path))
        first = llm.complete(ask(seed=7))
        script = textwrap.dedent(
            f"""
            from learnact.engine.llm import *
            backbone = OpenAIBackbone("gpt-4o-mini", base_url={server.base_url!r})
            llm = CachedBackbone(backbone, ResponseCache({str(tmp_path)!r}))
            request = ChatRequest(model="gpt-4o-mini", messages=(ChatMessage(role="user", content="hi"),), seed=7)
            print(llm.complete(request).model_dump_json())
            print(llm.complete(request.model_copy(update={{"seed": 8}})).text)
            """
        )
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert lines[0] == first.model_dump_json()
        assert len(server.received) == 2  # only the other process's seed 8
        assert llm.complete(ask(seed=8)).text == lines[1]  # and what it stored is seen here
        assert len(server.received) == 2


def test_a_corrupt_row_is_a_miss_and_is_replaced(tmp_path: Path) -> None:
    with ScriptedServer() as server:
        llm = CachedBackbone(backbone(server), ResponseCache(tmp_path))
        llm.complete(ask())
        with sqlite3.connect(tmp_path / DB_NAME) as db:
            db.execute("""UPDATE responses SET value = '{"text": 5'""")
        assert llm.complete(ask()).text == "answer 2"  # the torn row is never an answer
        assert llm.complete(ask()).text == "answer 2"  # and it was replaced
        assert len(server.received) == 2


def test_a_cache_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    (tmp_path / DB_NAME).write_bytes(b"this is not an sqlite database" * 100)
    with pytest.raises(CacheError, match="cannot be used") as caught:
        ResponseCache(tmp_path)
    assert f"delete {tmp_path / DB_NAME}" in caught.value.describe() and "{no_cache}" in caught.value.remedy


READ_ONLY_USE = """
import sys
from learnact.engine.llm import ChatMessage, ChatRequest, ChatResponse, ResponseCache
cache = ResponseCache(sys.argv[1])
request = ChatRequest(model="m", messages=(ChatMessage(role="user", content="hi"),))
print(cache.get("server", request).text, cache.read_only)
cache.put("server", request, ChatResponse(text="not stored"))
print(cache.get("server", request).text)
"""


def test_a_populated_read_only_cache_still_serves_its_answers(tmp_path: Path) -> None:
    request = ChatRequest(model="m", messages=(ChatMessage(role="user", content="hi"),))
    cache = ResponseCache(tmp_path)
    cache.put("server", request, ChatResponse(text="stored before"))
    cache.close()
    # A read-only file system (what root cannot write either): the cache folder bound read-only, in a mount
    # namespace of the child's own.
    folder = shlex.quote(str(tmp_path))
    script = f'mount --bind -o ro {folder} {folder} && exec {shlex.quote(sys.executable)} -c "$0" {folder}'
    result = subprocess.run(
        ["unshare", "--mount", "sh", "-c", script, READ_ONLY_USE], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["stored before True", "stored before"]
    assert "cannot be written" in result.stderr and "its answers are used" in result.stderr


def test_the_default_cache_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "learnact"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "learnact"


# --- accounting ---------------------------------------------------------------------------------------


def test_every_call_is_recorded_with_totals_and_cost(tmp_path: Path) -> None:
    log = CallLog(tmp_path)
    ledger = Ledger(sink=log.append)
    script = [Answer("a", prompt_tokens=1000, completion_tokens=500), Status(400, "refused")]
    with ScriptedServer(script) as server:
        llm = RecordingBackbone(CachedBackbone(backbone(server), ResponseCache(tmp_path / "cache")), ledger)
        one, two = llm.for_episode("blockworld/0"), llm.for_episode("blockworld/1")
        one.complete(ask())
        two.complete(ask())  # a hit
        with pytest.raises(LLMError):
            two.complete(ask("other"))
    records = log.read()
    assert [(r.episode, r.cached, r.error is not None) for r in records] == [
        ("blockworld/0", False, False),
        ("blockworld/1", True, False),
        ("blockworld/1", False, True),
    ]
    paid = (1000 * 0.15 + 500 * 0.60) / 1_000_000
    assert records[0].cost_usd == pytest.approx(paid) and records[1].cost_usd == 0.0
    assert records[0].request.messages[0].content == "hi" and records[0].response.text == "a"
    assert "HTTP 400" in records[2].error and records[2].response is None
    assert all(r.latency_s >= 0 for r in records)
    total = ledger.totals()
    assert (total.calls, total.cached_calls, total.failed_calls) == (3, 1, 1)
    assert (total.prompt_tokens, total.completion_tokens) == (2000, 1000)
    assert total.cost_usd == pytest.approx(paid) and total.unpriced_calls == 0
    assert ledger.episode_totals("blockworld/0").prompt_tokens == 1000
    assert ledger.episode_totals("blockworld/1").calls == 2
    lines = [json.loads(line) for line in (tmp_path / CALLS).read_text().splitlines()]  # plain JSON lines
    assert [line["cached"] for line in lines] == [False, True, False] and "cached" not in lines[1]["response"]


def test_an_unknown_price_is_no_cost() -> None:
    ledger = Ledger()
    with ScriptedServer() as server:
        llm = RecordingBackbone(OpenAIBackbone("mystery", base_url=server.base_url, **FAST), ledger)
        llm.complete(ask().model_copy(update={"model": "mystery-7b"}))
    total = ledger.totals()
    assert total.cost_usd == 0.0 and total.unpriced_calls == 1 and total.prompt_tokens == 10


def test_prices(tmp_path: Path) -> None:
    table = PriceTable()
    assert table.price("gpt-4o-2024-08-06") == table.price("gpt-4o")
    assert table.price("gpt-4o-mini-2024-07-18") == table.price("gpt-4o-mini") != table.price("gpt-4o")
    assert table.cost("local", 10**6, 10**6) == 0.0 and table.cost("unknown", 1, 1) is None
    path = tmp_path / "prices.json"
    path.write_text(
        json.dumps(
            {"gpt-4o": {"input_per_1m": 1, "output_per_1m": 2}, "my-vllm": {"input_per_1m": 0, "output_per_1m": 0}}
        )
    )
    table = PriceTable.from_file(path)
    assert table.price("gpt-4o") == Price(input_per_1m=1, output_per_1m=2)
    assert table.cost("my-vllm", 5, 5) == 0.0 and table.price("gpt-4.1") is not None
    path.write_text('{"gpt-4o": {"input_per_1m": -1, "output_per_1m": 2}}')
    with pytest.raises(PriceFileError, match="bad price"):
        PriceTable.from_file(path)
    path.write_text("[]")
    with pytest.raises(PriceFileError, match="not a JSON object"):
        PriceTable.from_file(path)


def test_a_slow_answer_has_its_latency() -> None:
    ledger = Ledger()
    with ScriptedServer([Answer("slow", delay_s=0.2)]) as server:
        RecordingBackbone(backbone(server), ledger).complete(ask())
    assert ledger.totals().latency_s >= 0.2


def test_a_torn_last_line_of_the_call_log_is_cut_before_the_next_append(tmp_path: Path) -> None:
    from learnact.engine.llm import CallRecord

    (tmp_path / CALLS).write_bytes(b'{"episode": "killed while writi')  # a kill inside a write
    log = CallLog(tmp_path)
    assert log.read() == []
    record = CallRecord(backbone="b", started=0.0, latency_s=0.1, request=ask(), response=None, error="x")
    log.append(record)
    log.append(record)
    assert log.read() == [record, record]
    assert (tmp_path / CALLS).read_bytes().count(b"\n") == 2
