"""A persistent response cache, so that a rerun of the same configuration makes no request and gives the
same answers, in any run directory.

The key is the whole request: the backbone's identity (for a server, its base URL) and every field of the
:class:`ChatRequest` (model, messages, temperature, max tokens, stop, seed, grammar), as the sha256 of canonical
JSON. One SQLite file holds one row per key; it is shared by all runs of the user (``$XDG_CACHE_HOME/
learnact``, default ``~/.cache/learnact``). SQLite in WAL mode with a busy timeout makes it safe under
threads (one connection per thread) and processes; a transaction is atomic, so a killed writer leaves no
torn row. A row that does not read back as a valid answer (a corrupted value) is a miss and is replaced
by the next answer; it never reaches an agent. A cache that can be read but not written (a read-only folder
or file system, a shared cache) still answers what it holds: new answers are then not stored (one warning).

Within one process, workers that miss on the same request at the same moment send it once: the others
wait for that answer (a per-key lock; different requests never wait on each other). Two *processes* that
miss at the same moment both ask (the later answer wins the row).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from learnact.actions.errors import LearnactError
from learnact.engine.llm.base import Backbone, ChatMessage, ChatRequest, ChatResponse

DB_NAME = "responses.sqlite3"
KEY_VERSION = 2  # bump when the key's recipe changes: old rows are then simply never hit (2: the grammar)
BUSY_TIMEOUT_MS = 30_000
MAX_VALUE_BYTES = 1024 * 1024  # a stored value larger than this is treated as corrupt
log = logging.getLogger(__name__)


class CacheError(LearnactError):
    """The cache at ``path`` cannot be opened (not an SQLite file, neither readable nor creatable)."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        super().__init__(
            f"the response cache {path} cannot be used: {problem}",
            f"delete {path} (it only saves repeating requests), give another {{cache_dir}}, or run with {{no_cache}}",
        )


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/learnact``, else ``~/.cache/learnact``."""
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base and Path(base).is_absolute() else Path.home() / ".cache") / "learnact"


def cache_key(identity: str, request: ChatRequest) -> str:
    """The sha256 (hex) of the canonical JSON of the backbone's identity and the whole request."""
    canonical = json.dumps(
        {"v": KEY_VERSION, "backbone": identity, "request": request.model_dump(mode="json")},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8", "backslashreplace")).hexdigest()


class ResponseCache:
    """Answers stored by request, in ``cache_dir`` (default :func:`default_cache_dir`). Thread-safe.

    :raises CacheError: when the folder or the database cannot be created or opened.
    """

    def __init__(self, cache_dir: Path | None = None) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.path = self.cache_dir / DB_NAME
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self.read_only = False  # set when the cache can be read but not written
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheError(self.cache_dir, exc.strerror or str(exc)) from None
        self._connection()  # opens (and creates) it now, so that a bad cache is told at the start

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is not None and self._local.pid == os.getpid():
            return connection
        try:
            connection = self._open_writable()
        except sqlite3.Error as exc:
            connection = self._open_read_only(exc)
        self._local.connection, self._local.pid = connection, os.getpid()
        with self._all_lock:
            self._all.append(connection)
        return connection

    def _open_writable(self) -> sqlite3.Connection:
        # Used by its own thread only; check_same_thread=False lets close() close every thread's connection.
        connection = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        try:
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")
            connection.execute(
                "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL, stored REAL NOT NULL)"
            )
        except sqlite3.Error:
            connection.close()
            raise
        return connection

    def _open_read_only(self, why: sqlite3.Error) -> sqlite3.Connection:
        """A cache that cannot be written: read what it holds (immutable: a read-only WAL database cannot make
        its shared-memory file), or :class:`CacheError` with ``why`` when it cannot be read either."""
        if not self.path.is_file():
            raise CacheError(self.path, str(why))
        try:
            connection = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?immutable=1", uri=True, isolation_level=None, check_same_thread=False
            )
            connection.execute("SELECT key, value FROM responses LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise CacheError(self.path, f"{why}; read-only: {exc}") from None
        if not self.read_only:
            self.read_only = True
            log.warning(
                "response cache %s cannot be written (%s): its answers are used, new ones not stored", self.path, why
            )
        return connection

    def get(self, identity: str, request: ChatRequest) -> ChatResponse | None:
        """The stored answer to ``request`` by the backbone ``identity``, marked ``cached``; None on a miss, an
        unreadable row or a database error (logged): the cache never stands between a caller and an answer."""
        key = cache_key(identity, request)
        try:
            row = self._connection().execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        except (sqlite3.Error, CacheError) as exc:
            log.warning("response cache %s: cannot read: %s", self.path, exc)
            return None
        if row is None:
            return None
        value = row[0]
        try:
            if not isinstance(value, str) or len(value) > MAX_VALUE_BYTES:
                raise ValueError("not a bounded text value")
            stored = ChatResponse.model_validate_json(value)
        except (ValidationError, ValueError) as exc:
            log.warning("response cache %s: row %s is corrupt, treated as a miss: %s", self.path, key[:12], exc)
            return None
        return stored.model_copy(update={"cached": True})

    def put(self, identity: str, request: ChatRequest, response: ChatResponse) -> None:
        """Store ``response`` as the answer to ``request`` (replacing any row); a failure is logged. A read-only
        cache stores nothing."""
        if self.read_only:
            return
        key = cache_key(identity, request)
        try:
            self._connection().execute(
                "INSERT OR REPLACE INTO responses (key, value, stored) VALUES (?, ?, ?)",
                (key, response.model_dump_json(), time.time()),
            )
        except (sqlite3.Error, CacheError) as exc:
            log.warning("response cache %s: cannot write: %s", self.path, exc)

    def __len__(self) -> int:
        return self._connection().execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        """Close every thread's connection (call once no thread uses the cache any more)."""
        with self._all_lock:
            connections, self._all = self._all, []
        for connection in connections:
            try:
                connection.close()
            except sqlite3.Error as exc:
                log.debug("response cache %s: closing a connection: %s", self.path, exc)
        self._local = threading.local()


class CachedBackbone(Backbone):
    """``backbone`` behind ``cache``: a hit answers without a request (its answer says ``cached``); a miss asks
    and stores the answer. Errors are never stored."""

    def __init__(self, backbone: Backbone, cache: ResponseCache) -> None:
        self.backbone, self.cache = backbone, cache
        self.identity, self.context_tokens = backbone.identity, backbone.context_tokens
        self._asking: dict[str, tuple[threading.Lock, int]] = {}  # key -> (its lock, threads using it)
        self._asking_lock = threading.Lock()

    def complete(self, request: ChatRequest) -> ChatResponse:
        """:raises LLMError: from the backbone, on a miss."""
        cached = self.cache.get(self.identity, request)
        if cached is not None:
            return cached
        key = cache_key(self.identity, request)
        with self._asking_lock:
            lock, users = self._asking.get(key, (threading.Lock(), 0))
            self._asking[key] = (lock, users + 1)
        try:
            with lock:  # a thread that asked the same request first has stored its answer by now
                cached = self.cache.get(self.identity, request)
                if cached is not None:
                    return cached
                response = self.backbone.complete(request)
                self.cache.put(self.identity, request, response)
                return response
        finally:
            with self._asking_lock:
                lock, users = self._asking[key]
                if users == 1:
                    del self._asking[key]
                else:
                    self._asking[key] = (lock, users - 1)

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """The backbone's count."""
        return self.backbone.count_tokens(messages)

    def abort(self) -> None:
        self.backbone.abort()

    def close(self) -> None:
        self.backbone.close()
