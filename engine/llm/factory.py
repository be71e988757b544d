"""Which backbone a model name stands for: ``local`` is llama.cpp in process (an optional extra, imported
only when asked for), ``NAME:MODEL`` the model MODEL of the provider plugin NAME, any other name a model on
an OpenAI-compatible server or Azure.

A provider plugin is an installed distribution whose entry point in the group ``learnact.backbones`` is named
NAME and names a :data:`BackboneFactory`. Only a NAME some distribution registers is a prefix: a server's
model name may hold ``:`` itself (``qwen2.5:7b`` on Ollama), and stays a server model unless a provider is
called ``qwen2.5``. The plugin is imported only when its name is used; it can never replace ``local``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from learnact.actions.plugins import BACKBONE_GROUP, Discovery, discover
from learnact.engine.llm.base import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT_S, Backbone, BackboneConfigError, LLMError

LOCAL = "local"
LOCAL_EXTRA = "pip install -e '.[local]'"
BUILTIN_PROVIDERS = (LOCAL,)


@dataclass(frozen=True)
class BackboneSettings:
    """What :func:`make_backbone` was given besides the model name, for a provider plugin to use or ignore.
    The API key is the one ``--api-key-env`` names (None: the provider reads its own variables)."""

    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    model_path: Path | None = None
    n_ctx: int | None = None
    cache_dir: Path | None = None
    azure_endpoint: str | None = None
    api_version: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_retries: int = DEFAULT_MAX_RETRIES


BackboneFactory = Callable[[str, BackboneSettings], Backbone]
"""What an entry point of the group ``learnact.backbones`` names: given MODEL of ``NAME:MODEL`` and the
settings, a thread-safe :class:`Backbone` whose ``identity`` names the model and where it runs (it keys the
response cache and a run's identity), or a :class:`LearnactError` that the user sees as it is. The requests it
gets name the model as the user gave it (``NAME:MODEL``)."""


def backbone_plugins() -> Discovery:
    """The model providers installed distributions add (their modules are not imported)."""
    return discover(BACKBONE_GROUP, BUILTIN_PROVIDERS)


def make_backbone(
    model: str,
    base_url: str | None = None,
    api_key: str | None = None,
    *,
    model_path: Path | None = None,
    n_ctx: int | None = None,
    cache_dir: Path | None = None,
    azure_endpoint: str | None = None,
    api_version: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_retries: int = DEFAULT_MAX_RETRIES,
) -> Backbone:
    """The backbone for ``model``: ``local`` gives llama.cpp in process (``model_path``: another GGUF),
    ``NAME:MODEL`` with NAME a provider plugin that provider's backbone for MODEL (:data:`BackboneFactory`,
    given these settings), any other name an :class:`OpenAIBackbone` (settings from the parameters or the
    usual variables). ``n_ctx``: the local model's context (default: what it was trained for, at most 32768);
    for a server model, the context its prompts are trimmed to (default: none). ``cache_dir`` is where the local
    model is assembled (default: the user's learnact cache).

    :raises BackboneConfigError: for a server model with no key, no base URL and no Azure endpoint.
    :raises LLMError: when ``local`` is asked for but its extra is not installed.
    :raises PluginError: for a provider plugin that is refused (named ``local``, or by two distributions) or
        broken: it cannot be imported, names no callable, fails, or builds something else than a backbone.
    :raises LearnactError: that a provider plugin raised.
    """
    if model == LOCAL:
        try:
            from learnact.engine.llm.local import LocalBackbone

            return LocalBackbone(model_path=model_path, cache_dir=cache_dir, n_ctx=n_ctx)
        except ImportError as exc:
            raise LLMError(LOCAL, f"the local backend is not installed ({exc})", f"run {LOCAL_EXTRA}") from None
    provider, colon, provided = model.partition(":")
    plugin = backbone_plugins().find(provider) if colon else None
    if plugin is not None:
        factory = plugin.load()
        if not callable(factory):
            raise plugin.error(f"names a {type(factory).__name__}, not a callable that builds a Backbone")
        settings = BackboneSettings(
            base_url=base_url, api_key=api_key, model_path=model_path, n_ctx=n_ctx, cache_dir=cache_dir,
            azure_endpoint=azure_endpoint, api_version=api_version, timeout_s=timeout_s, max_retries=max_retries,
        )  # fmt: skip
        backbone = plugin.call(f"building the backbone of '{model}'", factory, provided, settings)
        if not isinstance(backbone, Backbone):
            raise plugin.error(
                f"returned {type(backbone).__name__} for '{model}', not a Backbone (learnact.engine.llm)"
            )
        if not isinstance(getattr(backbone, "identity", None), str):
            raise plugin.error(f"built a backbone for '{model}' without an identity (its attribute `identity`)")
        return backbone
    if not (
        api_key
        or base_url
        or azure_endpoint
        or os.environ.get("OPENAI_API_KEY")
        or os.environ.get("OPENAI_BASE_URL")
        or os.environ.get("AZURE_OPENAI_ENDPOINT")
    ):
        raise BackboneConfigError(
            f"no API key or server for the model {model}",
            "set OPENAI_API_KEY, or give {base_url} of an OpenAI-compatible server, or use {model} local "
            "(a small model run in process)",
        )
    from learnact.engine.llm.openai_backbone import OpenAIBackbone  # the openai client: imported when used

    return OpenAIBackbone(
        model,
        base_url=base_url,
        api_key=api_key,
        azure_endpoint=azure_endpoint,
        api_version=api_version,
        timeout_s=timeout_s,
        max_retries=max_retries,
        context_tokens=n_ctx,
    )
