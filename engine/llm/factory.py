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
import socket
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from learnact.actions.plugins import BACKBONE_GROUP, Discovery, discover
from learnact.engine.llm.base import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT_S, Backbone, BackboneConfigError, LLMError
from learnact.engine.llm.cache import CachedBackbone, ResponseCache
from learnact.engine.llm.choice import LOCAL, default_model

LOCAL_EXTRA = "pip install -e '.[local]'"
BUILTIN_PROVIDERS = (LOCAL,)


class ModelDescription(BaseModel):
    """How to build a run's language model, in every process that asks it: the driver, each Ray node, a
    worker process. JSON, and never the API key: ``api_key_env`` names the variable that holds it where the
    model is built (None: the usual variables, ``OPENAI_API_KEY`` or ``AZURE_OPENAI_API_KEY``).

    ``model`` None stands for :func:`default_model`'s choice; :meth:`resolved` applies it. Paths must exist
    where the model is built: ``model_path`` (a GGUF for the local model) and ``cache_dir`` (the response
    cache and where the local model is assembled; None: that machine's own cache folder).

    :raises pydantic.ValidationError: for an unknown field or a value out of range.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = Field(None, min_length=1)
    base_url: str | None = None
    api_key_env: str | None = None
    azure_endpoint: str | None = None
    api_version: str | None = None
    model_path: str | None = None
    # the local model's context (default: what it was trained for, at most 32768); for a server model, the
    # context its prompts are trimmed to (default: none)
    n_ctx: int | None = Field(None, ge=1)
    cache_dir: str | None = None
    cache: bool = True
    timeout_s: float = Field(DEFAULT_TIMEOUT_S, gt=0)
    max_retries: int = Field(DEFAULT_MAX_RETRIES, ge=0)

    def resolved(self) -> ModelDescription:
        """This description with the defaults of this process applied: the model (the local one for a
        ``model_path``, else :func:`default_model`'s), the base URL of ``OPENAI_BASE_URL`` for a server model
        without an Azure endpoint, and absolute paths. A resolved description resolves to itself.

        :raises BackboneConfigError: for settings that do not fit together (a ``model_path`` for a server
            model, server settings for the local one), a key variable that is not set, or no model at all.
        """
        if self.model_path is not None and self.model not in (None, LOCAL):
            raise BackboneConfigError(
                f"a model file for the model {self.model}", f"{{model_path}} is a GGUF file for {{model}} {LOCAL}"
            )
        model = LOCAL if self.model_path is not None else self.model
        if model == LOCAL:
            given = [f"{{{name}}}" for name in ("base_url", "azure_endpoint", "api_key_env") if getattr(self, name)]
            if given:
                raise BackboneConfigError(
                    f"server settings for the model {LOCAL}",
                    f"{', '.join(given)}: for a model on a server; {{model}} {LOCAL} runs in this process",
                )
        self.api_key()
        model = model or default_model(
            os.environ, api_key_env=self.api_key_env, base_url=self.base_url, azure_endpoint=self.azure_endpoint
        )
        if model is None:
            raise BackboneConfigError(
                "no language model",
                "give {model} with OPENAI_API_KEY set (or {base_url} of an OpenAI-compatible server, or "
                "{azure_endpoint}), or {model} local for a small model run in process",
            )
        base_url = self.base_url
        if model != LOCAL and not self.azure_endpoint:
            base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        absolute = {
            name: str(Path(value).expanduser().resolve())
            for name in ("model_path", "cache_dir")
            if (value := getattr(self, name)) is not None
        }
        return self.model_copy(update={"model": model, "base_url": base_url, **absolute})

    def api_key(self) -> str | None:
        """The key in the variable ``api_key_env`` names here (None when it names none).

        :raises BackboneConfigError: when the variable is not set on this machine.
        """
        if not self.api_key_env:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise BackboneConfigError(
                f"the variable {self.api_key_env} that holds the API key is not set on {socket.gethostname()}",
                "set it, or name another with {api_key_env}, in the environment of every machine that runs episodes",
            )
        return key


BackboneFactory = Callable[[str, ModelDescription], Backbone]
"""What an entry point of the group ``learnact.backbones`` names: given MODEL of ``NAME:MODEL`` and the
resolved description (its key, if any, from :meth:`ModelDescription.api_key`), a thread-safe
:class:`Backbone` whose ``identity`` names the model and where it runs (it keys the response cache and a
run's identity), or a :class:`LearnactError` that the user sees as it is. The requests it gets name the
model as the user gave it (``NAME:MODEL``)."""


def backbone_plugins() -> Discovery:
    """The model providers installed distributions add (their modules are not imported)."""
    return discover(BACKBONE_GROUP, BUILTIN_PROVIDERS)


def make_backbone(description: ModelDescription, identity: str | None = None) -> Backbone:
    """The backbone ``description`` names (after :meth:`ModelDescription.resolved`), built in this process,
    behind the response cache unless ``description.cache`` is off. With ``identity`` (a run's recorded
    :attr:`ModelSettings.backbone`), it must be that one: the same server, or GGUF file and its sha256.

    ``local`` gives llama.cpp in process, ``NAME:MODEL`` with NAME a provider plugin that provider's backbone
    for MODEL (:data:`BackboneFactory`), any other name an :class:`OpenAIBackbone`.

    :raises BackboneConfigError: for a description that does not resolve, a server model with no key, no base
        URL and no Azure endpoint, or a model built here that is another than ``identity``.
    :raises LLMError: when ``local`` is asked for but its extra is not installed or its file cannot be loaded.
    :raises CacheError: when the response cache cannot be opened.
    :raises PluginError: for a provider plugin that is refused (named ``local``, or by two distributions) or
        broken: it cannot be imported, names no callable, fails, or builds something else than a backbone.
    :raises LearnactError: that a provider plugin raised.
    """
    description = description.resolved()
    backbone = _provided(description)
    try:
        if identity is not None and backbone.identity != identity:
            raise BackboneConfigError(
                f"the model built on {socket.gethostname()} is {backbone.identity}, not the run's {identity}",
                "give every machine the same model file at the same path, and the same server settings",
            )
        if description.cache:
            backbone = CachedBackbone(
                backbone, ResponseCache(Path(description.cache_dir) if description.cache_dir else None)
            )
    except BaseException:
        backbone.close()
        raise
    return backbone


def _provided(description: ModelDescription) -> Backbone:
    """The backbone of a resolved description, without the cache (see :func:`make_backbone`)."""
    model = description.model
    assert model is not None  # resolved
    model_path = Path(description.model_path) if description.model_path else None
    cache_dir = Path(description.cache_dir) if description.cache_dir else None
    if model == LOCAL:
        try:
            from learnact.engine.llm.local import LocalBackbone

            return LocalBackbone(model_path=model_path, cache_dir=cache_dir, n_ctx=description.n_ctx)
        except ImportError as exc:
            raise LLMError(LOCAL, f"the local backend is not installed ({exc})", f"run {LOCAL_EXTRA}") from None
    provider, colon, provided = model.partition(":")
    plugin = backbone_plugins().find(provider) if colon else None
    if plugin is not None:
        factory = plugin.load()
        if not callable(factory):
            raise plugin.error(f"names a {type(factory).__name__}, not a callable that builds a Backbone")
        backbone = plugin.call(f"building the backbone of '{model}'", factory, provided, description)
        if not isinstance(backbone, Backbone):
            raise plugin.error(
                f"returned {type(backbone).__name__} for '{model}', not a Backbone (learnact.engine.llm)"
            )
        if not isinstance(getattr(backbone, "identity", None), str):
            raise plugin.error(f"built a backbone for '{model}' without an identity (its attribute `identity`)")
        return backbone
    api_key = description.api_key()
    if not (
        api_key
        or description.base_url
        or description.azure_endpoint
        or os.environ.get("OPENAI_API_KEY")
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
        base_url=description.base_url,
        api_key=api_key,
        azure_endpoint=description.azure_endpoint,
        api_version=description.api_version,
        timeout_s=description.timeout_s,
        max_retries=description.max_retries,
        context_tokens=description.n_ctx,
    )
