"""What a language-model backbone is: a chat request in, one answer out, both plain records.

Every backbone (an OpenAI-compatible server, llama.cpp in process) implements :class:`Backbone`.
The request is the whole input, every parameter included, so that it can key a response cache and
be written to a run directory as it was sent; the answer is untrusted text with its token usage.
Retries, caching and accounting wrap a backbone; they are not part of one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from learnact.actions.errors import LearnactError
from learnact.actions.transcript import ChatMessage
from learnact.engine.records import ModelSettings

DEFAULT_TIMEOUT_S = 120.0  # a model request's deadline unless configured
DEFAULT_MAX_RETRIES = 5


class BackboneConfigError(LearnactError):
    """The backbone cannot be made from the settings given (no key, an incomplete Azure setting)."""


#: The estimate of a server model's tokens: one per this many UTF-8 bytes. Measured on the agent's prompts of
#: the four PDDL domains (ten steps of history) with Qwen2.5's tokenizer: 3.4 to 3.9 bytes a token, so the
#: estimate is 14 to 29 % above the count; dense text is below it ("b1 is on b2." is 7 tokens for 12 bytes),
#: but a prompt is mostly words. Tokenizers with larger vocabularies (GPT-4o's) need fewer tokens still.
ESTIMATE_BYTES_PER_TOKEN = 3
#: Tokens a chat template adds around one message (role markers, separators), and before the answer: Qwen2.5's
#: ChatML adds 5 per message and 3 before the answer; 8 covers the common templates.
TEMPLATE_TOKENS = 8


class ChatRequest(BaseModel):
    """One chat completion request, complete: what was asked and with which settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    messages: tuple[ChatMessage, ...]
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=256, ge=1)
    stop: tuple[str, ...] = ()
    seed: int | None = None
    # GBNF text (llama.cpp's grammar format) the answer must match; None: any text. Part of the request, so of
    # the cache key: the same messages under another grammar are another request.
    grammar: str | None = Field(default=None, min_length=1)


def chat_request(
    settings: ModelSettings,
    messages: Sequence[ChatMessage],
    *,
    seed: int | None,
    grammar: str | None = None,
    stop: tuple[str, ...] = (),
) -> ChatRequest:
    """The request asking ``settings``' model (its name, temperature and answer length) for an answer to
    ``messages``, sampled with ``seed``, under ``grammar`` (None: any text), stopping at any of ``stop``: the one
    way every caller turns its model settings into a request.

    :raises pydantic.ValidationError: for an empty ``grammar``.
    """
    return ChatRequest(
        model=settings.model,
        messages=tuple(messages),
        temperature=settings.temperature,
        max_tokens=settings.max_tokens,
        stop=stop,
        seed=seed,
        grammar=grammar,
    )


class Usage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)


class ChatResponse(BaseModel):
    """The model's answer: untrusted text, why it stopped, and what it cost in tokens; ``cached`` when the
    response cache gave it instead of the model (set by the cache only)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str
    finish_reason: str | None = None
    usage: Usage = Usage()
    # How this answer was obtained, not part of it: never serialised, so a stored answer and a call record's
    # response read as before (the call record keeps it as its own ``cached``).
    cached: bool = Field(default=False, exclude=True)


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
    #: The tokens a request and its answer must fit in (the model's context window), as far as learnact knows
    #: it; None: unknown, and prompts are not trimmed to it.
    context_tokens: int | None = None

    @abstractmethod
    def complete(self, request: ChatRequest) -> ChatResponse:
        """The model's answer to ``request``.

        :raises LLMError: when no usable answer came (after the backbone's own retries).
        """

    def count_tokens(self, messages: Sequence[ChatMessage]) -> int:
        """The prompt tokens ``messages`` take, or a conservative estimate of them: what a history is trimmed by
        to fit :attr:`context_tokens`. This default, for a backbone without its tokenizer, counts one token per
        :data:`ESTIMATE_BYTES_PER_TOKEN` UTF-8 bytes, plus the chat template's tokens around each message."""
        return (
            sum(
                -(-len(m.content.encode("utf-8", "backslashreplace")) // ESTIMATE_BYTES_PER_TOKEN) + TEMPLATE_TOKENS
                for m in messages
            )
            + TEMPLATE_TOKENS
        )

    # Most backbones hold nothing to release, and have nothing to abort.
    def abort(self) -> None:  # noqa: B027
        """Make the requests in flight end at once with an :class:`LLMError`, and every later one: a run that
        is stopping (Ctrl-C, SIGTERM) must not wait for a model that does not answer. Thread-safe."""

    def close(self) -> None:  # noqa: B027
        """Release what the backbone holds (connections, a loaded model)."""
