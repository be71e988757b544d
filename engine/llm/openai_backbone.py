"""A backbone on any server that speaks OpenAI's chat-completions protocol (OpenAI, Azure, vLLM, Ollama,
llama.cpp's server), through the official ``openai`` package.

Retries are the client's own (``max_retries``, ``timeout``): it retries 408, 409, 429 and 5xx answers,
timeouts and connection errors with exponential backoff (0.5 s doubling, at most 8 s, with jitter), and
waits what a ``Retry-After`` or ``retry-after-ms`` header asks (up to two minutes; a longer wait is not
retried). After the last try the failure becomes an :class:`LLMError` naming the status and the server's
message.

The answer is untrusted: the raw body is parsed and validated here (never trusted to the SDK's lenient
models), a body or an answer text that is too large is refused or cut, and every failure is an
:class:`LLMError` with a reason, never an ``AttributeError`` deep in an agent.
"""

from __future__ import annotations

import json
import logging
import os

import openai
from pydantic import BaseModel, ConfigDict, ValidationError

from learnact.actions.errors import LearnactError
from learnact.actions.text import encodable, truncated, visible
from learnact.engine.llm.base import Backbone, ChatRequest, ChatResponse, LLMError, Usage

MAX_ANSWER_BYTES = 64 * 1024  # the answer text kept (UTF-8 bytes); longer answers are cut and marked
MAX_BODY_BYTES = 8 * 1024 * 1024  # a response body beyond this is refused unparsed
MAX_REASON_BYTES = 500  # what an error reason keeps of the server's message
DEFAULT_TIMEOUT_S = 120.0
DEFAULT_MAX_RETRIES = 5
NO_KEY = "no-key"  # the api_key sent to a server given by base URL without one (vLLM, Ollama ignore it)
log = logging.getLogger(__name__)


class BackboneConfigError(LearnactError):
    """The backbone cannot be made from the settings given (no key, an incomplete Azure setting)."""


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


class OpenAIBackbone(Backbone):
    """Chat completions from an OpenAI-compatible server, or from Azure OpenAI.

    Settings come from the parameters, else the usual variables: ``OPENAI_API_KEY``, ``OPENAI_BASE_URL``;
    for Azure (chosen by ``azure_endpoint`` or ``AZURE_OPENAI_ENDPOINT`` when no ``base_url`` is given)
    ``AZURE_OPENAI_API_KEY`` and ``OPENAI_API_VERSION``. A server given by base URL needs no key.
    ``model`` is the model a caller should put in its requests; the request's model is what is sent.

    :raises BackboneConfigError: when neither a key nor a server is given, or Azure lacks its version.
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
    ) -> None:
        self.model = model
        self.timeout_s, self.max_retries, self.max_answer_bytes = timeout_s, max_retries, max_answer_bytes
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        azure_endpoint = azure_endpoint or (None if base_url else os.environ.get("AZURE_OPENAI_ENDPOINT")) or None
        try:
            if azure_endpoint:
                api_version = api_version or os.environ.get("OPENAI_API_VERSION")
                api_key = api_key or os.environ.get("AZURE_OPENAI_API_KEY")
                if not api_version or not api_key:
                    raise BackboneConfigError(
                        f"Azure OpenAI at {azure_endpoint} needs an API version and a key",
                        "set OPENAI_API_VERSION and AZURE_OPENAI_API_KEY",
                    )
                self._client: openai.OpenAI = openai.AzureOpenAI(
                    azure_endpoint=azure_endpoint,
                    api_key=api_key,
                    api_version=api_version,
                    timeout=timeout_s,
                    max_retries=max_retries,
                )
                self.base_url = azure_endpoint.rstrip("/")
                self.identity = f"azure-openai {self.base_url} {api_version}"
            else:
                api_key = api_key or os.environ.get("OPENAI_API_KEY")
                if not api_key and not base_url:
                    raise BackboneConfigError(
                        f"no API key for the model {model}",
                        "set OPENAI_API_KEY, or give {base_url} of an OpenAI-compatible server, or use {model} local",
                    )
                self._client = openai.OpenAI(
                    api_key=api_key or NO_KEY, base_url=base_url, timeout=timeout_s, max_retries=max_retries
                )
                self.base_url = str(self._client.base_url).rstrip("/")
                self.identity = f"openai-compatible {self.base_url}"
        except openai.OpenAIError as exc:  # the client refused its settings
            raise BackboneConfigError(f"cannot set up the OpenAI client: {_bounded(exc)}") from None

    def _fail(self, reason: str) -> LLMError:
        return LLMError(self.identity, reason)

    def complete(self, request: ChatRequest) -> ChatResponse:
        """The server's answer to ``request`` (after the client's retries).

        :raises LLMError: an HTTP error, timeout or connection failure after the last try, or an answer
            that is not a usable chat completion.
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
        tries = f"after {self.max_retries + 1} tries"
        try:
            raw = self._client.chat.completions.with_raw_response.create(**arguments)
            body = raw.http_response.content
        except openai.APIStatusError as exc:
            raise self._fail(f"HTTP {exc.status_code} {tries}: {_bounded(exc.message)}") from None
        except openai.APITimeoutError:
            raise self._fail(f"no answer within {self.timeout_s:g} s {tries}") from None
        except openai.APIConnectionError as exc:
            cause = exc.__cause__ or exc
            raise self._fail(f"cannot connect to {self.base_url} {tries}: {_bounded(cause)}") from None
        except openai.OpenAIError as exc:
            raise self._fail(f"the request failed: {_bounded(exc)}") from None
        return self._parse(body)

    def _parse(self, body: bytes) -> ChatResponse:
        if len(body) > MAX_BODY_BYTES:
            raise self._fail(f"the answer's body has {len(body)} bytes, more than {MAX_BODY_BYTES}")
        try:
            completion = _Completion.model_validate(json.loads(body))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise self._fail(f"the answer is not JSON ({exc.msg if hasattr(exc, 'msg') else exc})") from None
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"]) or "the body"
            raise self._fail(f"the answer is not a chat completion ({where}: {error['msg']})") from None
        if not completion.choices:
            raise self._fail("the answer has no choices")
        choice = completion.choices[0]
        if choice.message.content is None:
            raise self._fail(f"the answer has no text (finish reason {choice.finish_reason!r})")
        usage = completion.usage or _Usage()
        return ChatResponse(
            text=truncated(encodable(choice.message.content), self.max_answer_bytes),
            finish_reason=None if choice.finish_reason is None else truncated(encodable(choice.finish_reason), 64),
            usage=Usage(
                prompt_tokens=max(usage.prompt_tokens or 0, 0), completion_tokens=max(usage.completion_tokens or 0, 0)
            ),
        )

    def close(self) -> None:
        self._client.close()
