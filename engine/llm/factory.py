"""Which backbone a model name stands for: ``local`` is llama.cpp in process (an optional extra, imported
only when asked for), any other name a model on an OpenAI-compatible server or Azure."""

from __future__ import annotations

import os
from pathlib import Path

from learnact.engine.llm.base import Backbone, LLMError
from learnact.engine.llm.openai_backbone import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT_S,
    BackboneConfigError,
    OpenAIBackbone,
)

LOCAL = "local"
LOCAL_EXTRA = "pip install -e '.[local]'"


def make_backbone(
    model: str,
    base_url: str | None = None,
    api_key: str | None = None,
    *,
    model_path: Path | None = None,
    cache_dir: Path | None = None,
    azure_endpoint: str | None = None,
    api_version: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_retries: int = DEFAULT_MAX_RETRIES,
) -> Backbone:
    """The backbone for ``model``: ``local`` gives llama.cpp in process (``model_path``: another GGUF),
    any other name an :class:`OpenAIBackbone` (settings from the parameters or the usual variables).
    ``cache_dir`` is where the local model is assembled (default: the user's learnact cache).

    :raises BackboneConfigError: for a server model with no key, no base URL and no Azure endpoint.
    :raises LLMError: when ``local`` is asked for but its extra is not installed.
    """
    if model == LOCAL:
        try:
            from learnact.engine.llm.local import LocalBackbone

            return LocalBackbone(model_path=model_path, cache_dir=cache_dir)
        except ImportError as exc:
            raise LLMError(LOCAL, f"the local backend is not installed ({exc})", f"run {LOCAL_EXTRA}") from None
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
    return OpenAIBackbone(
        model,
        base_url=base_url,
        api_key=api_key,
        azure_endpoint=azure_endpoint,
        api_version=api_version,
        timeout_s=timeout_s,
        max_retries=max_retries,
    )
