"""What a language-model backbone is: a chat request in, one answer out, both plain records.

Every backbone (an OpenAI-compatible server, llama.cpp in process) implements :class:`Backbone`.
The request is the whole input, every parameter included, so that it can key a response cache and
be written to a run directory as it was sent; the answer is untrusted text with its token usage.
Retries, caching and accounting wrap a backbone; they are not part of one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from learnact.actions.errors import LearnactError

DEFAULT_TIMEOUT_S = 120.0  # a model request's deadline unless configured
DEFAULT_MAX_RETRIES = 5


class BackboneConfigError(LearnactError):
    """The backbone cannot be made from the settings given (no key, an incomplete Azure setting)."""


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["system", "user", "assistant"]
    content: str


class ChatRequest(BaseModel):
    """One chat completion request, complete: what was asked and with which settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    messages: tuple[ChatMessage, ...]
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=256, ge=1)
    stop: tuple[str, ...] = ()
    seed: int | None = None


class Usage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)


class ChatResponse(BaseModel):
    """The model's answer: untrusted text, why it stopped, and what it cost in tokens."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str
    finish_reason: str | None = None
    usage: Usage = Usage()


class ModelFailure(LearnactError):
    """The model gave no usable answer where a command needed one: every command ends with status 3."""


class LLMError(ModelFailure):
    """The backbone gave no usable answer (after its retries): the episode records it and goes on."""

    def __init__(self, backbone: str, reason: str, remedy: str = "") -> None:
        self.backbone, self.reason = backbone, reason
        super().__init__(f"the model backbone {backbone} failed: {reason}", remedy)


class Backbone(ABC):
    """A language model that answers chat requests. Implementations are thread-safe."""

    #: Names the backbone in cache keys and records (e.g. the server's base URL, or the GGUF file's hash).
    identity: str

    @abstractmethod
    def complete(self, request: ChatRequest) -> ChatResponse:
        """The model's answer to ``request``.

        :raises LLMError: when no usable answer came (after the backbone's own retries).
        """

    # Most backbones hold nothing to release, and have nothing to abort.
    def abort(self) -> None:  # noqa: B027
        """Make the requests in flight end at once with an :class:`LLMError`, and every later one: a run that
        is stopping (Ctrl-C, SIGTERM) must not wait for a model that does not answer. Thread-safe."""

    def close(self) -> None:  # noqa: B027
        """Release what the backbone holds (connections, a loaded model)."""
