"""learnact.engine.llm: language-model backbones (OpenAI-compatible servers, llama.cpp in process), with
retries, a response cache and accounting. ``make_backbone`` builds one from a :class:`ModelDescription`.

:class:`OpenAIBackbone` is loaded on first use: importing the ``openai`` client takes a third of a second,
which a worker process running the expert must not pay."""

from typing import Any

from learnact.engine.llm.accounting import (
    CALLS,
    DEFAULT_PRICES,
    CallLog,
    CallRecord,
    Ledger,
    Price,
    PriceFileError,
    PriceTable,
    RecordingBackbone,
    Totals,
)
from learnact.engine.llm.base import (
    Backbone,
    BackboneConfigError,
    ChatMessage,
    ChatRequest,
    ChatResponse,
    LLMError,
    Usage,
    chat_request,
)
from learnact.engine.llm.cache import CachedBackbone, CacheError, ResponseCache, cache_key, default_cache_dir
from learnact.engine.llm.choice import DEFAULT_SERVER_MODEL, LOCAL, default_model
from learnact.engine.llm.factory import BackboneFactory, ModelDescription, backbone_plugins, make_backbone

__all__ = [
    "CALLS",
    "DEFAULT_PRICES",
    "DEFAULT_SERVER_MODEL",
    "LOCAL",
    "Backbone",
    "BackboneConfigError",
    "BackboneFactory",
    "CacheError",
    "CachedBackbone",
    "CallLog",
    "CallRecord",
    "ChatMessage",
    "ChatRequest",
    "ChatResponse",
    "LLMError",
    "Ledger",
    "ModelDescription",
    "OpenAIBackbone",
    "Price",
    "PriceFileError",
    "PriceTable",
    "RecordingBackbone",
    "ResponseCache",
    "Totals",
    "Usage",
    "backbone_plugins",
    "chat_request",
    "cache_key",
    "default_cache_dir",
    "default_model",
    "make_backbone",
]


def __getattr__(name: str) -> Any:
    if name == "OpenAIBackbone":
        from learnact.engine.llm.openai_backbone import OpenAIBackbone

        return OpenAIBackbone
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
