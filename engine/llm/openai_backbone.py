"""A backbone on any server that speaks OpenAI's chat-completions protocol (OpenAI, Azure, vLLM, Ollama,
llama.cpp's server), through the official ``openai`` package.

Retries are the client's own (``max_retries``): it retries 408, 409, 429 and 5xx answers, timeouts and
connection errors with exponential backoff (0.5 s doubling, at most 8 s, with jitter), and waits what a
``Retry-After`` or ``retry-after-ms`` header asks (up to a minute). After the last try the failure becomes an
:class:`LLMError` naming the status and the server's message. ``timeout_s`` is one deadline per request
(connect, send and the whole answer), whatever the server sends (:mod:`learnact.engine.llm.http`).

The server is untrusted: the body is capped while it streams (decompressed bytes counted), parsed and
validated here (never trusted to the SDK's lenient models), an answer text that is too large is cut, the
key and any ``Bearer`` token are redacted from everything the server says, and every failure is an
:class:`LLMError` with a reason, never a ``RecursionError`` or an ``AttributeError`` deep in an agent. A base
URL must be an http(s) URL without credentials or a query: keys go in the environment, never in a URL that
runs record.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from urllib.parse import urlsplit

import openai
from openai._constants import MAX_RETRY_AFTER_DELAY  # the longest Retry-After the client waits (else no retry)
from pydantic import BaseModel, ConfigDict, ValidationError

from learnact.actions.text import encodable, truncated, visible
from learnact.engine.llm.base import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT_S,
    Backbone,
    BackboneConfigError,
    ChatRequest,
    ChatResponse,
    LLMError,
    Usage,
)
from learnact.engine.llm.http import BodyEncodingRefused, BodyTooLarge, GuardedClient, RequestAborted

MAX_ANSWER_BYTES = 64 * 1024  # the answer text kept (UTF-8 bytes); longer answers are cut and marked
MAX_BODY_BYTES = 8 * 1024 * 1024  # a response body beyond this is refused unparsed
MAX_REASON_BYTES = 500  # what an error reason keeps of the server's message
NO_KEY = "no-key"  # the api_key sent to a server given by base URL without one (vLLM, Ollama ignore it)
MAX_TOKEN_COUNT = 2**31 - 1  # a usage count beyond this is the server's nonsense: it is clamped
RETRIED_STATUSES = frozenset({408, 409, 429})  # and every 5xx: what the client retries
REDACTED = "[redacted]"
OPENAI_API_HOST = "api.openai.com"  # OpenAI's own API: no grammar field, and unknown fields are refused
GRAMMAR_REFUSALS = frozenset({400, 422})  # what a server answers a field or a grammar it does not take
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
log = logging.getLogger(__name__)


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    content: str | None = None


class _Choice(BaseModel):
    model_config = ConfigDict(extra="ignore")
    message: _Message
    finish_reason: str | None = None


class _Usage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class _Completion(BaseModel):
    model_config = ConfigDict(extra="ignore")
    choices: list[_Choice]
    usage: _Usage | None = None


def _bounded(text: object) -> str:
    return visible(truncated(encodable(str(text)), MAX_REASON_BYTES))


def checked_base_url(url: str) -> str:
    """``url`` when it is an http(s) URL with a host and without credentials, a query or a fragment.

    :raises BackboneConfigError: naming what is wrong with it.
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (a bad port raises here)
    except ValueError as exc:
        raise BackboneConfigError(
            f"the base URL {visible(url)!r} is not a URL ({exc})", "give {base_url} as http(s)://HOST[:PORT]/PATH"
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BackboneConfigError(
            f"the base URL {visible(url)!r} is not an http(s) URL with a host",
            "give {base_url} as http(s)://HOST[:PORT]/PATH",
        )
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise BackboneConfigError(
            "the base URL carries credentials, a query or a fragment, which runs would record",
            "put the key in OPENAI_API_KEY (or the variable named by {api_key_env}) and give {base_url} without them",
        )
    return url


class _Redactor:
    """Removes the key and any ``Bearer``/``Basic`` credential from text a server sent (proxies echo headers)."""

    def __init__(self, secrets: tuple[str | None, ...]) -> None:
        self._secrets = tuple(sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return _BEARER.sub(lambda m: f"{m[1]} {REDACTED}", text)


class OpenAIBackbone(Backbone):
    """Chat completions from an OpenAI-compatible server, or from Azure OpenAI.

    Settings come from the parameters, else the usual variables: ``OPENAI_API_KEY``, ``OPENAI_BASE_URL``;
    for Azure (chosen by ``azure_endpoint`` or ``AZURE_OPENAI_ENDPOINT`` when no ``base_url`` is given)
    ``AZURE_OPENAI_API_KEY`` and ``OPENAI_API_VERSION``. A server given by base URL needs no key.
    ``model`` is the model a caller should put in its requests; the request's model is what is sent.
    ``context_tokens``: the context the model's prompts are trimmed to (None: not trimmed by tokens), counted
    by the estimate of :meth:`Backbone.count_tokens` (the server's tokenizer is not at hand).

    A request's grammar is sent as llama.cpp's server reads it, the body's ``grammar`` field, to every server but
    OpenAI's own API and Azure OpenAI (:attr:`sends_grammar`), which have no such field and refuse a request
    that carries one. vLLM ignores the field (it reads ``guided_grammar``, in a dialect of its guided-decoding
    backend, now ``structured_outputs``): it is not sent that too, since a text one backend parses another may
    refuse, and a request that works today would then fail. A server that refuses the request of a grammar
    says so in the error, which names the grammar: never a silent retry without it.

    :raises BackboneConfigError: when neither a key nor a server is given, Azure lacks its version, or a URL
        is not an http(s) URL without credentials.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        azure_endpoint: str | None = None,
        api_version: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
        context_tokens: int | None = None,
    ) -> None:
        self.model, self.context_tokens = model, context_tokens
        self.timeout_s, self.max_retries, self.max_answer_bytes = timeout_s, max_retries, max_answer_bytes
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        azure_endpoint = azure_endpoint or (None if base_url else os.environ.get("AZURE_OPENAI_ENDPOINT")) or None
        self._http = http = GuardedClient(deadline_s=timeout_s, max_body_bytes=MAX_BODY_BYTES)
        options = {"timeout": timeout_s, "max_retries": max_retries, "http_client": http}
        try:
            if azure_endpoint:
                checked_base_url(azure_endpoint)
                api_version = api_version or os.environ.get("OPENAI_API_VERSION")
                api_key = api_key or os.environ.get("AZURE_OPENAI_API_KEY")
                if not api_version or not api_key:
                    raise BackboneConfigError(
                        f"Azure OpenAI at {azure_endpoint} needs an API version and a key",
                        "set OPENAI_API_VERSION and AZURE_OPENAI_API_KEY",
                    )
                self._client: openai.OpenAI = openai.AzureOpenAI(
                    azure_endpoint=azure_endpoint, api_key=api_key, api_version=api_version, **options
                )
                self.base_url = azure_endpoint.rstrip("/")
                self.identity = f"azure-openai {self.base_url} {api_version}"
            else:
                if base_url is not None:
                    checked_base_url(base_url)
                api_key = api_key or os.environ.get("OPENAI_API_KEY")
                if not api_key and not base_url:
                    raise BackboneConfigError(
                        f"no API key for the model {model}",
                        "set OPENAI_API_KEY, or give {base_url} of an OpenAI-compatible server, or use {model} local",
                    )
                self._client = openai.OpenAI(api_key=api_key or NO_KEY, base_url=base_url, **options)
                self.base_url = str(self._client.base_url).rstrip("/")
                self.identity = f"openai-compatible {self.base_url}"
        except openai.OpenAIError as exc:  # the client refused its settings
            http.close()
            raise BackboneConfigError(f"cannot set up the OpenAI client: {_bounded(exc)}") from None
        except BackboneConfigError:
            http.close()
            raise
        self._redact = _Redactor((api_key,))
        self.sends_grammar = not azure_endpoint and urlsplit(self.base_url).hostname != OPENAI_API_HOST

    def _fail(self, reason: str) -> LLMError:
        return LLMError(self.identity, reason)

    def _said(self, text: object) -> str:
        """What the server said, made safe to keep: secrets redacted, valid text, bounded, visible."""
        return visible(truncated(self._redact(encodable(str(text))), MAX_REASON_BYTES))

    def complete(self, request: ChatRequest) -> ChatResponse:
        """The server's answer to ``request`` (after the client's retries).

        :raises LLMError: an HTTP error, timeout or connection failure after the last try, a body over the cap
            or in an encoding not asked for, or an answer that is not a usable chat completion.
        """
        arguments: dict = {
            "model": request.model,
            "messages": [message.model_dump() for message in request.messages],
            "temperature": request.temperature,
        }
        if request.max_tokens is not None:
            arguments["max_tokens"] = request.max_tokens
        if request.stop:
            arguments["stop"] = list(request.stop)
        if request.seed is not None:
            arguments["seed"] = request.seed
        grammar_sent = request.grammar is not None and self.sends_grammar
        if grammar_sent:
            arguments["extra_body"] = {"grammar": request.grammar}
        tries = "after 1 try" if self.max_retries == 0 else f"after {self.max_retries + 1} tries"
        try:
            raw = self._client.chat.completions.with_raw_response.create(**arguments)
            body = raw.http_response.content
        except (BodyTooLarge, BodyEncodingRefused, RequestAborted) as exc:
            raise self._fail(str(exc)) from None
        except openai.APIStatusError as exc:
            reason = self._status_reason(exc, tries)
            if grammar_sent and exc.status_code in GRAMMAR_REFUSALS:
                reason += (
                    "; the request carried a grammar (llama.cpp's `grammar` field), which llama.cpp's server reads:"
                    " this server may not accept it"
                )
            raise self._fail(reason) from None
        except openai.APITimeoutError:
            raise self._fail(f"no complete answer within {self.timeout_s:g} s {tries}") from None
        except openai.APIConnectionError as exc:
            cause = exc.__cause__ or exc
            if isinstance(cause, (BodyTooLarge, BodyEncodingRefused, RequestAborted)):
                raise self._fail(str(cause)) from None
            raise self._fail(f"cannot connect to {self.base_url} {tries}: {self._said(cause)}") from None
        except openai.OpenAIError as exc:
            raise self._fail(f"the request failed: {self._said(exc)}") from None
        return self._parse(body)

    def _status_reason(self, exc: openai.APIStatusError, tries: str) -> str:
        """Why an HTTP error ended the request, with how often it was tried: a status the client retries was
        tried ``tries``, unless the server asked to wait longer than the client waits (it says so)."""
        said = f"HTTP {exc.status_code}"
        if exc.status_code not in RETRIED_STATUSES and exc.status_code < 500:
            return f"{said} (not retried): {self._said(exc.message)}"
        wait = _retry_after_s(exc.response.headers)
        if wait is not None and wait > MAX_RETRY_AFTER_DELAY:
            return (
                f"{said} (not retried: the server asks to wait {wait:.0f} s, more than the"
                f" {MAX_RETRY_AFTER_DELAY:g} s a retry waits; try again later): {self._said(exc.message)}"
            )
        return f"{said} {tries}: {self._said(exc.message)}"

    def _parse(self, body: bytes) -> ChatResponse:
        try:
            completion = _Completion.model_validate(json.loads(body))
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"]) or "the body"
            raise self._fail(f"the answer is not a chat completion ({where}: {error['msg']})") from None
        except json.JSONDecodeError as exc:
            raise self._fail(f"the answer is not JSON ({exc.msg})") from None
        except (ValueError, RecursionError):  # not UTF-8, a number of thousands of digits, nested too deep
            raise self._fail(
                "the answer is not JSON learnact reads (not UTF-8, a number too long, or nested too deep)"
            ) from None
        if not completion.choices:
            raise self._fail("the answer has no choices")
        choice = completion.choices[0]
        if choice.message.content is None:
            raise self._fail(f"the answer has no text (finish reason {self._said(choice.finish_reason)!r})")
        usage = completion.usage or _Usage()
        return ChatResponse(
            text=truncated(self._redact(encodable(choice.message.content)), self.max_answer_bytes),
            finish_reason=None if choice.finish_reason is None else truncated(encodable(choice.finish_reason), 64),
            usage=Usage(prompt_tokens=_count(usage.prompt_tokens), completion_tokens=_count(usage.completion_tokens)),
        )

    def abort(self) -> None:
        """Requests in flight end within a fraction of a second, and every later one at once (an LLMError)."""
        self._http.abort()

    def close(self) -> None:
        self._client.close()


def _retry_after_s(headers: Mapping[str, str]) -> float | None:
    """The wait a ``Retry-After`` (seconds or an HTTP date) or ``retry-after-ms`` header asks for, if any."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return float(value) * scale
        except ValueError:
            pass
    try:
        when = email.utils.parsedate_to_datetime(headers.get("retry-after", ""))
    except (TypeError, ValueError):
        return None
    return (when - datetime.now(timezone.utc)).total_seconds() if when.tzinfo else None


def _count(tokens: int | None) -> int:
    return min(max(tokens or 0, 0), MAX_TOKEN_COUNT)
