"""Which model a run uses when none is named: the one rule the CLI, the library and `.ci/demo` share.

Standard library only, and runnable by path (``python3 engine/llm/choice.py`` prints the choice, ``local``
when no server is known), because the demo chooses its model before learnact is installed: the choice
decides whether the local model's extra is installed at all.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

LOCAL = "local"  # the model name of llama.cpp run in process
DEFAULT_SERVER_MODEL = "gpt-4o-mini"  # the model when a server or an API key is known and none is named


def default_model(
    environ: Mapping[str, str],
    *,
    api_key_env: str | None = None,
    base_url: str | None = None,
    azure_endpoint: str | None = None,
) -> str | None:
    """DEFAULT_SERVER_MODEL when a model server can be asked: a key (``api_key_env``'s variable or
    OPENAI_API_KEY), a base URL (``base_url`` or OPENAI_BASE_URL), or an Azure endpoint (``azure_endpoint`` or
    AZURE_OPENAI_ENDPOINT) with AZURE_OPENAI_API_KEY; None when no server is known."""
    key = (environ.get(api_key_env) if api_key_env else None) or environ.get("OPENAI_API_KEY")
    azure = (azure_endpoint or environ.get("AZURE_OPENAI_ENDPOINT")) and environ.get("AZURE_OPENAI_API_KEY")
    if key or base_url or environ.get("OPENAI_BASE_URL") or azure:
        return DEFAULT_SERVER_MODEL
    return None


if __name__ == "__main__":
    sys.stdout.write((default_model(os.environ) or LOCAL) + "\n")
