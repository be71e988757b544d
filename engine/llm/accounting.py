"""Accounting of model calls: every call as a record (what was asked, what came back, tokens, latency,
cache hit, error), token totals per episode and per run, and an estimated cost where the model's price
is known.

A :class:`RecordingBackbone` wraps a backbone for one episode and hands each :class:`CallRecord` to a
shared :class:`Ledger`, which adds it to the totals and passes it to a sink, typically a
:class:`CallLog` that appends it to the run directory as a JSON line (fsynced, never a half line).
Prices are estimates from a small table (:data:`DEFAULT_PRICES`, per million tokens, USD), which a
caller can override or extend from a JSON file; a cache hit costs nothing, its tokens still count.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from learnact.actions.errors import LearnactError
from learnact.actions.files import AppendLog, read_bounded
from learnact.engine.llm.base import Backbone, ChatMessage, ChatRequest, ChatResponse, LLMError
from learnact.engine.rundir import describe_os_error, read_records

CALLS = "calls.jsonl"  # the file of call records in a run directory
MAX_PRICE_FILE_BYTES = 1_000_000
MAX_CALLS_BYTES = 1 << 30  # calls.jsonl: every request and answer of a run


class Price(BaseModel):
    """USD per million tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_1m: float = Field(ge=0)
    output_per_1m: float = Field(ge=0)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_per_1m + completion_tokens * self.output_per_1m) / 1_000_000


# OpenAI's list prices (standard tier) when written, 2025; override with a price file where they changed.
DEFAULT_PRICES: dict[str, Price] = {
    name: Price(input_per_1m=i, output_per_1m=o)
    for name, (i, o) in {
        "gpt-4o": (2.50, 10.00),
        "gpt-4o-mini": (0.15, 0.60),
        "gpt-4.1": (2.00, 8.00),
        "gpt-4.1-mini": (0.40, 1.60),
        "gpt-4.1-nano": (0.10, 0.40),
        "gpt-4-turbo": (10.00, 30.00),
        "gpt-4": (30.00, 60.00),
        "gpt-3.5-turbo": (0.50, 1.50),
        "o3-mini": (1.10, 4.40),
        "o4-mini": (1.10, 4.40),
        "local": (0.0, 0.0),
    }.items()
}
_DATED = re.compile(r"-\d{4}-\d{2}-\d{2}$|-\d{4}$")  # gpt-4o-2024-08-06, gpt-3.5-turbo-0125


class PriceFileError(LearnactError):
    """The price file ``path`` cannot be read or is not a table of prices."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        super().__init__(
            f"the price file {path} {problem}",
            'give {price_file} as a JSON object {"model": {"input_per_1m": USD, "output_per_1m": USD}}',
        )


class PriceTable:
    """Prices by model name; a dated snapshot (``gpt-4o-2024-08-06``) costs what its model costs."""

    def __init__(self, prices: Mapping[str, Price] | None = None, *, replace: bool = False) -> None:
        self.prices: dict[str, Price] = {} if replace else dict(DEFAULT_PRICES)
        self.prices.update(prices or {})

    @classmethod
    def from_file(cls, path: Path) -> PriceTable:
        """The default table with the prices of ``path`` (JSON) added or replacing.

        :raises PriceFileError: when it cannot be read or is not a price table.
        """
        try:
            data = json.loads(read_bounded(path, MAX_PRICE_FILE_BYTES))
        except OSError as exc:
            raise PriceFileError(path, f"cannot be read ({exc.strerror or exc})") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise PriceFileError(path, f"is not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise PriceFileError(path, "is not a JSON object")
        try:
            return cls({str(name): Price.model_validate(price) for name, price in data.items()})
        except ValidationError as exc:
            error = exc.errors()[0]
            raise PriceFileError(path, f"has a bad price ({error['msg']} at {error['loc']})") from None

    def price(self, model: str) -> Price | None:
        return self.prices.get(model) or self.prices.get(_DATED.sub("", model))

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
        """The estimated cost in USD; None when the model's price is not known."""
        price = self.price(model)
        return None if price is None else price.cost(prompt_tokens, completion_tokens)


class CallRecord(BaseModel):
    """One call of a backbone: the request as sent, the answer or the error, and what it cost."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    episode: str | None = None
    backbone: str
    started: float  # Unix time
    latency_s: float = Field(ge=0)
    cached: bool = False
    request: ChatRequest
    response: ChatResponse | None = None
    error: str | None = None
    cost_usd: float | None = None  # 0 for a cache hit, None where the price is not known


class Totals(BaseModel):
    """Sums over calls. Tokens count every answer (cached ones too); cost counts requests made."""

    model_config = ConfigDict(extra="forbid")

    calls: int = 0
    cached_calls: int = 0
    failed_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0  # of the calls whose price is known
    unpriced_calls: int = 0  # requests made to a model of unknown price (cost_usd leaves them out)
    latency_s: float = 0.0

    def add(self, record: CallRecord) -> None:
        self.calls += 1
        self.cached_calls += record.cached
        self.failed_calls += record.error is not None
        self.latency_s += record.latency_s
        if record.response is not None:
            self.prompt_tokens += record.response.usage.prompt_tokens
            self.completion_tokens += record.response.usage.completion_tokens
        if record.cost_usd is not None:
            self.cost_usd += record.cost_usd
        elif not record.cached and record.response is not None:
            self.unpriced_calls += 1


class CallLog:
    """Appends call records to ``run_dir / CALLS`` as JSON lines, each fsynced; a failed write leaves no half
    line, and a torn last line left by a kill is cut before the next append (:class:`AppendLog`). Thread-safe."""

    def __init__(self, run_dir: Path) -> None:
        self._log = AppendLog(run_dir / CALLS, root=run_dir, max_bytes=MAX_CALLS_BYTES)
        self.path = self._log.path

    def append(self, record: CallRecord) -> None:
        """:raises RunDirError: when the line cannot be written."""
        try:
            self._log.append((record.model_dump_json() + "\n").encode("utf-8"))
        except OSError as exc:
            raise describe_os_error(exc, self.path, "write") from None

    def read(self) -> list[CallRecord]:
        """The records written so far (a torn last line is skipped).

        :raises RunDirError: when the file cannot be read or a line is not a call record.
        """
        return read_records(self._log, CallRecord, "a call record")


class Ledger:
    """Totals of calls per episode and for the run, and the sink every record goes to. Thread-safe."""

    def __init__(self, prices: PriceTable | None = None, sink: Callable[[CallRecord], None] | None = None) -> None:
        self.prices = prices or PriceTable()
        self.sink = sink
        self._lock = threading.Lock()
        self._run = Totals()
        self._episodes: dict[str | None, Totals] = {}

    def record(self, record: CallRecord) -> None:
        """Count ``record`` and hand it to the sink.

        :raises RunDirError: from a :class:`CallLog` sink that cannot write.
        """
        with self._lock:
            self._run.add(record)
            self._episodes.setdefault(record.episode, Totals()).add(record)
        if self.sink is not None:
            self.sink(record)

    def totals(self) -> Totals:
        with self._lock:
            return self._run.model_copy()

    def episode_totals(self, episode: str | None) -> Totals:
        with self._lock:
            return (self._episodes.get(episode) or Totals()).model_copy()


class RecordingBackbone(Backbone):
    """``backbone`` with every call recorded in ``ledger`` under ``episode``. Put it outside a
    :class:`CachedBackbone` so that hits are recorded as such."""

    def __init__(self, backbone: Backbone, ledger: Ledger, episode: str | None = None) -> None:
        self.backbone, self.ledger, self.episode = backbone, ledger, episode
        self.identity, self.context_tokens = backbone.identity, backbone.context_tokens

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """The backbone's count (nothing is recorded: no request is made)."""
        return self.backbone.count_tokens(messages)

    def for_episode(self, episode: str | None) -> RecordingBackbone:
        """The same backbone and ledger, recording under ``episode``."""
        return RecordingBackbone(self.backbone, self.ledger, episode)

    def complete(self, request: ChatRequest) -> ChatResponse:
        """:raises LLMError: from the backbone (recorded first).
        :raises RunDirError: when the ledger's sink cannot write the record."""
        started, clock = time.time(), time.monotonic()
        try:
            response = self.backbone.complete(request)
        except LLMError as exc:
            self._record(request, started, clock, error=str(exc))
            raise
        self._record(request, started, clock, response=response)
        return response

    def _record(
        self,
        request: ChatRequest,
        started: float,
        clock: float,
        *,
        response: ChatResponse | None = None,
        error: str | None = None,
    ) -> None:
        """The call of ``request`` begun at ``started`` (``clock``: the monotonic clock then), with its cost at the
        ledger's prices (none for a failed call, nothing for one the cache answered)."""
        cost = None
        if response is not None:
            usage, prices = response.usage, self.ledger.prices
            cost = 0.0 if response.cached else prices.cost(request.model, usage.prompt_tokens, usage.completion_tokens)
        self.ledger.record(
            CallRecord(
                episode=self.episode,
                backbone=self.identity,
                started=started,
                latency_s=max(time.monotonic() - clock, 0.0),
                cached=response is not None and response.cached,
                request=request,
                response=response,
                error=error,
                cost_usd=cost,
            )
        )

    def abort(self) -> None:
        self.backbone.abort()

    def close(self) -> None:
        self.backbone.close()
