"""The HTTP client of the OpenAI-compatible backbone, hardened against a hostile server.

A model server is untrusted like the code it writes: it may answer slowly, endlessly, inflated or echoing
secrets. The ``openai`` client is kept (it speaks the protocol and retries), and is handed this HTTP client,
which adds what its own options cannot express:

- **One deadline per request.** The client's timeout applies to each read, so a server dripping a byte
  every few seconds would keep a request alive forever. Here every socket operation of a request (connect,
  TLS, each write and read) waits at most until ``deadline_s`` after the request started: at the deadline
  the read fails as a timeout, whatever the server sends. Each retry is a new request with its own deadline.
- **Bodies capped while they stream, decompressed bytes counted.** A body is read chunk by chunk and
  refused (:class:`BodyTooLarge`) the moment it passes ``max_body_bytes``; a gzip or deflate body is
  inflated here, with bounded output, so 1.5 MB that would inflate to 1.5 GB stops at the cap. Other
  encodings are refused (only ``gzip, deflate`` is asked for).
- **No redirects followed**: an answer is the server's own, never fetched from wherever it points.
- **Abortable.** :meth:`GuardedClient.abort` makes every request in flight end within a fraction of a second
  (:class:`RequestAborted`, which the client does not retry) and refuses new ones: a run that is stopping
  does not wait for a server that does not answer. Reads wait in slices of :data:`ABORT_POLL_S` for this.

The deadline is enforced in the network layer of ``httpcore2``, which the ``openai`` client's ``httpx2``
uses: its connection pool takes a network backend, and ours wraps the default one.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Iterator

import httpcore2
import httpx2

from learnact.actions.errors import LearnactError

_ACCEPTED_ENCODING = "gzip, deflate"
ABORT_POLL_S = 0.2  # the longest a blocked read or write goes without looking whether the client was aborted


class RequestAborted(LearnactError):
    """The client was aborted (the run is stopping): the request ended without an answer."""

    def __init__(self) -> None:
        super().__init__("the request was abandoned: the run is stopping")


class BodyTooLarge(LearnactError):
    """The server's body passed ``limit`` bytes (after decompression): it was not read further."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"the answer's body is larger than {limit:,} bytes (counted after decompression)")


class BodyEncodingRefused(LearnactError):
    """The server compressed its body with an encoding that was not asked for."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        super().__init__(f"the answer's body is encoded as {encoding!r}, which learnact does not accept")


class _Deadline(threading.local):
    """The deadline of the request the current thread is making (one request at a time per thread), and the
    client's abort, shared by every thread."""

    def __init__(self, aborted: threading.Event) -> None:
        self.aborted = aborted
        self.at = float("inf")
        self.seconds = 0.0

    def start(self, seconds: float) -> None:
        if self.aborted.is_set():
            raise RequestAborted()
        self.seconds, self.at = seconds, time.monotonic() + seconds

    def clip(self, timeout: float | None, timed_out: type[Exception]) -> float:
        """The wait allowed for one socket operation given ``timeout``: never past the deadline.

        :raises RequestAborted: when the client was aborted.
        """
        if self.aborted.is_set():
            raise RequestAborted()
        remaining = self.at - time.monotonic()
        if remaining <= 0:
            raise timed_out(f"the request's deadline of {self.seconds:g} s passed")
        return remaining if timeout is None else min(timeout, remaining)

    def sliced(self, operation, timeout: float | None, timed_out: type[Exception]):  # noqa: ANN001, ANN202
        """``operation(wait)`` retried in slices of at most ABORT_POLL_S until it completes, the deadline or
        ``timeout`` passes (``timed_out``), or the client is aborted. A timed-out slice consumed nothing."""
        until = time.monotonic() + self.clip(timeout, timed_out)
        while True:
            left = until - time.monotonic()
            if left <= 0:  # (a wait of 0 would make the socket non-blocking, not a short wait)
                raise timed_out(f"no data within {timeout:g} s" if timeout is not None else "timed out")
            try:
                return operation(min(ABORT_POLL_S, left))
            except timed_out:
                self.clip(None, timed_out)  # aborted, or the deadline passed: raises


class _DeadlineStream(httpcore2.NetworkStream):
    def __init__(self, inner: httpcore2.NetworkStream, deadline: _Deadline) -> None:
        self._inner, self._deadline = inner, deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._deadline.sliced(lambda wait: self._inner.read(max_bytes, wait), timeout, httpcore2.ReadTimeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        # A write is not sliced: a timed-out send may have sent part of the buffer. It waits until the deadline.
        self._inner.write(buffer, self._deadline.clip(timeout, httpcore2.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None) -> httpcore2.NetworkStream:  # noqa: ANN001
        timeout = self._deadline.clip(timeout, httpcore2.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, timeout), self._deadline)

    def get_extra_info(self, info: str) -> object:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore2.NetworkBackend):
    def __init__(self, inner: httpcore2.NetworkBackend, deadline: _Deadline) -> None:
        self._inner, self._deadline = inner, deadline

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):  # noqa: ANN001, ANN201
        timeout = self._deadline.clip(timeout, httpcore2.ConnectTimeout)
        stream = self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _DeadlineStream(stream, self._deadline)

    def connect_unix_socket(self, path, timeout=None, socket_options=None):  # noqa: ANN001, ANN201
        timeout = self._deadline.clip(timeout, httpcore2.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_unix_socket(path, timeout, socket_options), self._deadline)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _CappedBody(httpx2.SyncByteStream):
    """The body of ``inner``, decoded (gzip or deflate) and counted; :class:`BodyTooLarge` past ``limit``."""

    def __init__(self, inner: httpx2.SyncByteStream, encoding: str, limit: int) -> None:
        self._inner, self._limit = inner, limit
        if encoding in ("", "identity"):
            self._inflater = None
        elif encoding in ("gzip", "x-gzip", "deflate"):
            self._inflater = zlib.decompressobj(wbits=zlib.MAX_WBITS | 32)  # a gzip or zlib header, detected
        else:
            raise BodyEncodingRefused(encoding)

    def __iter__(self) -> Iterator[bytes]:
        size = 0
        for chunk in self._inner:
            if self._inflater is not None:
                chunk = self._inflater.decompress(chunk, self._limit - size + 1)
            size += len(chunk)
            if size > self._limit:
                raise BodyTooLarge(self._limit)
            yield chunk

    def close(self) -> None:
        self._inner.close()


class GuardedTransport(httpx2.HTTPTransport):
    """httpx2's transport with a deadline per request and a cap on every body (see the module docstring)."""

    def __init__(self, *, deadline_s: float, max_body_bytes: int, aborted: threading.Event, **options: object) -> None:
        super().__init__(**options)
        self.deadline_s, self.max_body_bytes = deadline_s, max_body_bytes
        self._deadline = _Deadline(aborted)
        pool = self._pool
        if not isinstance(getattr(pool, "_network_backend", None), httpcore2.NetworkBackend):
            raise RuntimeError("this httpcore2 keeps its network backend elsewhere: learnact's deadline needs it")
        pool._network_backend = _DeadlineBackend(pool._network_backend, self._deadline)

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        """:raises BodyEncodingRefused: for a body compressed in an encoding that was not asked for.
        :raises RequestAborted: when the client was aborted, before or during the request."""
        self._deadline.start(self.deadline_s)
        response = super().handle_request(request)
        encoding = response.headers.get("content-encoding", "").strip().lower()
        try:
            body = _CappedBody(response.stream, encoding, self.max_body_bytes)
        except BodyEncodingRefused:
            response.close()
            raise
        headers = [(k, v) for k, v in response.headers.raw if k.lower() not in (b"content-encoding", b"content-length")]
        return httpx2.Response(
            status_code=response.status_code, headers=headers, stream=body, extensions=response.extensions
        )


class GuardedClient(httpx2.Client):
    """An ``httpx2.Client`` whose every transport, proxies' included, is a :class:`GuardedTransport`."""

    def __init__(self, *, deadline_s: float, max_body_bytes: int) -> None:
        self._aborted = threading.Event()
        self._guard = {"deadline_s": deadline_s, "max_body_bytes": max_body_bytes, "aborted": self._aborted}
        super().__init__(
            transport=GuardedTransport(**self._guard),
            follow_redirects=False,
            headers={"Accept-Encoding": _ACCEPTED_ENCODING},
        )

    def abort(self) -> None:
        """End every request in flight within ABORT_POLL_S (:class:`RequestAborted`) and refuse new ones."""
        self._aborted.set()

    def _init_proxy_transport(self, proxy: httpx2.Proxy, **options: object) -> httpx2.BaseTransport:
        return GuardedTransport(proxy=proxy, **options, **self._guard)
