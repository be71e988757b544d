"""What the commands share: the exit statuses, how an error is shown, logging, and the common options.

Errors: a command lets a :class:`LearnactError` end it through :func:`reported` (or :func:`failure`),
which prints it as one line, ``error: ...``, with the parameters its remedy names written as this
command line's flags (``--pddl-problems``, not `` `pddl_problems` ``), and exits with the status of the
table below. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum
from pathlib import Path
from typing import Annotated, NamedTuple, Optional, TextIO

import typer
from rich.console import Console
from rich.highlighter import NullHighlighter
from rich.logging import RichHandler
from rich.markup import escape

from learnact.actions import LearnactError
from learnact.actions.errors import parameter
from learnact.actions.text import visible
from learnact.engine.agents import method_names, method_spec
from learnact.engine.executor import Executor, ExecutorName, LocalExecutor, ModelRecipe, default_executor
from learnact.engine.llm import LOCAL, Backbone, CachedBackbone, PriceTable, ResponseCache, make_backbone
from learnact.engine.llm.base import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT_S, ModelFailure
from learnact.engine.process_executor import ProcessExecutor
from learnact.engine.records import Method, ModelSettings
from learnact.envs import EnvSpec
from learnact.envs.pddl.family import expand_problem_paths
from learnact.images import ImageBuildError
from learnact.sandbox import BackendName, RuntimeName, SandboxConfig, SandboxUnavailable


class ExitCode(IntEnum):
    """The exit status of every command."""

    OK = 0
    FAILED = 1  # it ran and reports a failure: an error finding (check), a status other than ok
    # (sandbox exec), a failed build (images build)
    USAGE = 2  # an option, file, environment, task or run directory that cannot be used; nothing ran
    EPISODE_ERRORS = 3  # an episode recorded in the run directory ended by an error, or the model failed
    UNAVAILABLE = 4  # the sandbox cannot run here: no Docker engine, image or runtime
    INTERRUPTED = 130  # Ctrl-C (SIGTERM and SIGHUP end a command with 128 + their number)


def exit_code(error: LearnactError) -> ExitCode:
    """The exit status a command ends with on ``error``."""
    if isinstance(error, SandboxUnavailable):
        return ExitCode.UNAVAILABLE
    if isinstance(error, ImageBuildError):
        return ExitCode.FAILED
    if isinstance(error, ModelFailure):
        return ExitCode.EPISODE_ERRORS
    return ExitCode.USAGE


# The flag of each parameter a library remedy may name.
FLAGS = {
    "alfworld_data": "--alfworld-data",
    "backend": "--backend",
    "base": "--base",
    "env": "--env",
    "max_steps": "--max-steps",
    "out": "--out",
    "pddl_domain": "--pddl-domain",
    "pddl_problems": "--pddl-problems",
    "runtime": "--runtime",
    "split": "--split",
    "workers": "--workers",
    "model": "--model",
    "base_url": "--base-url",
    "cache_dir": "--cache-dir",
    "model_path": "--model-path",
    "n_ctx": "--n-ctx",
    "azure_endpoint": "--azure-endpoint",
    "api_version": "--api-version",
    "api_key_env": "--api-key-env",
    "prices": "--price-file",
    "price_file": "--price-file",
    "temperature": "--temperature",
    "max_tokens": "--max-tokens",
    "seeds": "--seeds",
    "test_on_rest": "--test-on-rest",
    "samples": "--samples",
    "learner_model": "--learner-model",
    "library": "--library",
    "interim": "--interim",
    "model_timeout": "--model-timeout",
    "model_retries": "--model-retries",
    "no_cache": "--no-cache",
    "learner_temperature": "--learner-temperature",
    "executor": "--executor",
    "ray_address": "--ray-address",
    "ray_cpus_per_episode": "--ray-cpus-per-episode",
}


def flag(name: str) -> str:
    """How a command line names a parameter: its flag (a parameter without one keeps its own name)."""
    return FLAGS.get(name) or parameter(name)


# soft_wrap: a message is one line however narrow the terminal (or the 80 columns of a pipe).
err = Console(stderr=True, highlight=False, emoji=False, soft_wrap=True)


def shown(text: str) -> str:
    """Untrusted text as rich markup that prints it literally: control characters made visible,
    markup escaped (program output, errors, observations, messages quoting code, diagnostics)."""
    return escape(visible(text))


def fail(message: str, code: ExitCode = ExitCode.USAGE) -> typer.Exit:
    """Print ``error: message`` as one line on stderr, the message shown literally; the Exit to raise."""
    err.print(f"[red]error:[/red] {shown(message)}")
    return typer.Exit(code)


def failure(error: LearnactError) -> typer.Exit:
    """Print ``error`` as :func:`fail` does, with flags for parameters; the Exit (its status) to raise."""
    return fail(error.describe(flag), exit_code(error))


@contextmanager
def resumable(out: Path, kept: str) -> Iterator[None]:
    """A stop signal in the block ends the command with its status, saying that ``kept`` (what is kept) is in
    ``out`` and how to resume: Ctrl-C (KeyboardInterrupt) with 130, SIGTERM or SIGHUP (the SystemExit that
    the signal handler raises) with 128 + its number."""
    try:
        yield
    except KeyboardInterrupt:
        err.print(f"interrupted: {kept} kept in {shown(str(out))}; run the same command to resume")
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    except SystemExit as exc:
        if isinstance(exc.code, int) and exc.code - 128 in (signal.SIGTERM, signal.SIGHUP):
            name = signal.Signals(exc.code - 128).name
            err.print(f"stopped by {name}: {kept} kept in {shown(str(out))}; run the same command to resume")
        raise


@contextmanager
def reported() -> Iterator[None]:
    """A LearnactError raised in the block ends the command (:func:`failure`); a bug keeps its traceback."""
    try:
        yield
    except LearnactError as error:
        raise failure(error) from None


# --- logging ---------------------------------------------------------------------------------------


class _VisibleFormatter(logging.Formatter):
    """Log lines may quote untrusted text (a sandbox's diagnostics, a path): made visible, never markup."""

    def format(self, record: logging.LogRecord) -> str:
        return visible(super().format(record))


class _StderrHandler(logging.StreamHandler):
    """Plain lines on whatever ``sys.stderr`` is when a record comes (a test runner swaps it)."""

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def configure_logging(verbosity: int) -> None:
    """Log learnact's warnings to stderr, and with ``verbosity`` 1 its progress (INFO), 2 or more every
    lifecycle event (DEBUG): through rich's handler on a terminal, as plain lines (one per record, for
    logs and grep) otherwise. Called once per command; a later call replaces the earlier set-up."""
    logger = logging.getLogger("learnact")
    for handler in [h for h in logger.handlers if getattr(h, "learnact_cli", False)]:
        logger.removeHandler(handler)
    handler: logging.Handler
    if sys.stderr.isatty():
        handler = RichHandler(
            console=Console(stderr=True, highlight=False, emoji=False),
            show_path=False,
            show_time=verbosity >= 2,
            markup=False,
            highlighter=NullHighlighter(),
        )
        handler.setFormatter(_VisibleFormatter("%(name)s: %(message)s"))
    else:
        handler = _StderrHandler()
        timed = "%(asctime)s " if verbosity >= 2 else ""
        handler.setFormatter(_VisibleFormatter(timed + "%(levelname)s %(name)s: %(message)s"))
    handler.learnact_cli = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbosity >= 2 else logging.INFO if verbosity == 1 else logging.WARNING)


# --- options more than one command takes -----------------------------------------------------------

DEFAULT_BACKEND: BackendName = SandboxConfig.model_fields["backend"].default
DEFAULT_RUNTIME: RuntimeName = SandboxConfig.model_fields["runtime"].default

BackendOption = Annotated[
    BackendName,
    typer.Option(
        "--backend",
        help="sandbox backend: docker, bwrap (bubblewrap, for machines without Docker), or process (an rlimited child;"
        " weaker: no file-system isolation)",
    ),
]
RuntimeOption = Annotated[RuntimeName, typer.Option("--runtime", help="OCI runtime of the containers; runsc is gVisor")]
PddlDomainOption = Annotated[
    Optional[Path], typer.Option("--pddl-domain", help="external PDDL domain file (--env pddl)")
]
PddlProblemsOption = Annotated[
    Optional[list[Path]],
    typer.Option("--pddl-problems", help="external PDDL problem files or folders of them (--env pddl)"),
]
AlfworldDataOption = Annotated[
    Optional[Path], typer.Option("--alfworld-data", help="folder holding json_2.1.1/ (default: $ALFWORLD_DATA)")
]
SplitOption = Annotated[str, typer.Option("--split", help="ALFWorld split")]
DEFAULT_SPLIT: str = EnvSpec.model_fields["split"].default


def env_spec(
    name: str,
    pddl_domain: Path | None = None,
    pddl_problems: list[Path] | None = None,
    alfworld_data: Path | None = None,
    split: str = DEFAULT_SPLIT,
) -> EnvSpec:
    """The EnvSpec the environment options describe (problem folders expanded to their files).

    :raises EnvSpecError: for a problem folder without ``.pddl`` files.
    """
    return EnvSpec(
        name=name,
        pddl_domain=str(pddl_domain) if pddl_domain else None,
        pddl_problems=expand_problem_paths(pddl_problems or (), pddl_domain),
        alfworld_data=str(alfworld_data) if alfworld_data else None,
        split=split,
    )


# --- the language model of a model method (eval, learn) ----------------------------------------------

DEFAULT_SERVER_MODEL = "gpt-4o-mini"  # --model when an API key is set and none is given

ModelOption = Annotated[
    Optional[str],
    typer.Option(
        "--model",
        help=f"model of a model method (a server's model or Azure deployment); '{LOCAL}' runs one in process; "
        f"PROVIDER:MODEL a provider plugin's (default: {DEFAULT_SERVER_MODEL} when an API key is set)",
    ),
]
ModelPathOption = Annotated[
    Optional[Path], typer.Option("--model-path", help=f"a GGUF file for --model {LOCAL} instead of the embedded model")
]
NCtxOption = Annotated[
    Optional[int],
    typer.Option(
        "--n-ctx",
        min=256,
        help=f"the context of --model {LOCAL} in tokens (default: what the model was trained for, at most 32768); "
        "for a server model, the context its prompts are trimmed to (default: not trimmed by tokens)",
    ),
]
BaseUrlOption = Annotated[
    Optional[str], typer.Option("--base-url", help="an OpenAI-compatible server (else $OPENAI_BASE_URL)")
]
ApiKeyEnvOption = Annotated[
    Optional[str],
    typer.Option(
        "--api-key-env",
        help="the environment variable holding the API key (default: OPENAI_API_KEY; Azure: AZURE_OPENAI_API_KEY)",
    ),
]
AzureEndpointOption = Annotated[
    Optional[str],
    typer.Option("--azure-endpoint", help="an Azure OpenAI endpoint (else $AZURE_OPENAI_ENDPOINT when no base URL)"),
]
ApiVersionOption = Annotated[
    Optional[str], typer.Option("--api-version", help="the Azure OpenAI API version (else $OPENAI_API_VERSION)")
]
TemperatureOption = Annotated[float, typer.Option("--temperature", min=0.0, max=2.0, help="sampling temperature")]
DEFAULT_TEMPERATURE: float = ModelSettings.model_fields["temperature"].default
MaxTokensOption = Annotated[
    Optional[int],
    typer.Option(
        "--max-tokens",
        min=1,
        help=f"longest answer in tokens (default: {ModelSettings.model_fields['max_tokens'].default}; "
        f"{method_spec(Method.code_as_policy).max_tokens} code_as_policy)",
    ),
]
CacheDirOption = Annotated[
    Optional[Path],
    typer.Option("--cache-dir", help="the response cache's folder (default: $XDG_CACHE_HOME/learnact)"),
]
NoCacheOption = Annotated[bool, typer.Option("--no-cache", help="ask the model every time; store nothing")]
ModelTimeoutOption = Annotated[
    float,
    typer.Option(
        "--model-timeout",
        envvar="LEARNACT_MODEL_TIMEOUT",
        min=1.0,
        help="seconds one request to a model server may take in all (connect, send, the whole answer)",
    ),
]
ModelRetriesOption = Annotated[
    int,
    typer.Option(
        "--model-retries",
        envvar="LEARNACT_MODEL_RETRIES",
        min=0,
        max=20,
        help="retries of a request that timed out, could not connect, or got 408, 409, 429 or 5xx",
    ),
]
PriceFileOption = Annotated[
    Optional[Path],
    typer.Option(
        "--price-file",
        help='JSON prices added to the built-in table: {"MODEL": {"input_per_1m": USD, "output_per_1m": USD}}',
    ),
]


class OpenedModel(NamedTuple):
    """What the model options give a command: the backbone to ask (behind the response cache unless
    ``--no-cache``), the settings a run records as part of its identity, and the price table of the
    cost estimate (None: the built-in one). All None for a method that uses no model."""

    backbone: Backbone | None
    settings: ModelSettings | None
    prices: PriceTable | None


def open_model(
    method: str,
    *,
    model: str | None = None,
    model_path: Path | None = None,
    n_ctx: int | None = None,
    base_url: str | None = None,
    api_key_env: str | None = None,
    azure_endpoint: str | None = None,
    api_version: str | None = None,
    temperature: float = DEFAULT_TEMPERATURE,
    max_tokens: int | None = None,
    cache_dir: Path | None = None,
    no_cache: bool = False,
    price_file: Path | None = None,
    model_timeout: float = DEFAULT_TIMEOUT_S,
    model_retries: int = DEFAULT_MAX_RETRIES,
) -> OpenedModel:
    """The language model the options of this section describe, for ``method`` (nothing for the expert).

    Without ``model``: the local backend when ``model_path`` is given, else DEFAULT_SERVER_MODEL when an
    API key is set (``api_key_env``'s variable, OPENAI_API_KEY, or AZURE_OPENAI_API_KEY with an Azure
    endpoint); with none, the command fails saying what to set and that ``--model local`` exists. The
    base URL and Azure settings fall back to the usual variables as :func:`make_backbone` reads them.
    The recorded :class:`ModelSettings` name the backbone by its identity (the server, or the GGUF file
    and its sha256), so a run directory never mixes two models. The caller closes the backbone
    (:func:`close_backbone`).

    :raises typer.Exit: (the error printed, status USAGE) for options that do not fit together, an unset
        key variable, no model at all, an unreadable price file, a local backend that is not installed or
        has no model file, or a response cache that cannot be opened.
    """
    if not method_spec(method).uses_model:
        return OpenedModel(None, None, None)
    with reported():
        prices = PriceTable.from_file(price_file) if price_file is not None else None
    model, api_key = _chosen_model(method, model, model_path, base_url, api_key_env, azure_endpoint)
    if model != LOCAL and not azure_endpoint:
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
    if max_tokens is None:
        max_tokens = method_spec(method).max_tokens or ModelSettings.model_fields["max_tokens"].default
    with reported():
        backbone = make_backbone(
            model,
            base_url,
            api_key,
            model_path=model_path,
            n_ctx=n_ctx,
            cache_dir=cache_dir,
            azure_endpoint=azure_endpoint,
            api_version=api_version,
            timeout_s=model_timeout,
            max_retries=model_retries,
        )
        settings = ModelSettings(
            model=model,
            base_url=None if model == LOCAL or azure_endpoint else base_url,
            backbone=backbone.identity,
            context_tokens=backbone.context_tokens,
            temperature=temperature,
            max_tokens=max_tokens,
        )
        if not no_cache:
            try:
                backbone = CachedBackbone(backbone, ResponseCache(cache_dir))
            except BaseException:
                close_backbone(backbone)
                raise
    return OpenedModel(backbone, settings, prices)


def _chosen_model(
    method: str,
    model: str | None,
    model_path: Path | None,
    base_url: str | None,
    api_key_env: str | None,
    azure_endpoint: str | None,
) -> tuple[str, str | None]:
    """The model the options name (see :func:`open_model`) and the key ``api_key_env`` holds.

    :raises typer.Exit: (the error printed, status USAGE) for options that do not fit together, an unset key
        variable, or no model at all.
    """
    if model_path is not None and model not in (None, LOCAL):
        raise fail(f"--model-path is a GGUF file for --model {LOCAL}, not for --model {model}")
    model = LOCAL if model_path is not None and model is None else model
    if model == LOCAL:
        server_flags = {"--base-url": base_url, "--azure-endpoint": azure_endpoint, "--api-key-env": api_key_env}
        given = [name for name, value in server_flags.items() if value]
        if given:
            raise fail(f"{', '.join(given)}: for a model on a server; --model {LOCAL} runs in this process")
    api_key = os.environ.get(api_key_env) if api_key_env else None
    if api_key_env and not api_key:
        raise fail(f"the variable {api_key_env} (--api-key-env) is not set")
    if model is None:
        azure = azure_endpoint or os.environ.get("AZURE_OPENAI_ENDPOINT")
        if not (api_key or os.environ.get("OPENAI_API_KEY") or (azure and os.environ.get("AZURE_OPENAI_API_KEY"))):
            raise fail(
                f"the method {method} needs a language model: give --model with OPENAI_API_KEY set "
                f"(or --base-url of an OpenAI-compatible server, or --azure-endpoint), or --model {LOCAL} for a "
                "small model run in process"
            )
        model = DEFAULT_SERVER_MODEL
    return model, api_key


def close_backbone(backbone: Backbone | None) -> None:
    """Close ``backbone`` (None: nothing); a failure to close is a warning, never hiding a run's outcome."""
    if backbone is None:
        return
    try:
        backbone.close()
    except (LearnactError, OSError) as exc:
        err.print(f"[yellow]warning:[/yellow] closing the model backbone: {shown(str(exc))}")


MethodOption = Annotated[
    str,
    typer.Option(
        help="how actions are chosen: expert, act, react, act_reflexion, react_reflexion, code_as_policy, "
        "learnact, or a plugin's method",
        autocompletion=lambda: method_names(),
    ),
]

ExecutorOption = Annotated[
    Optional[ExecutorName],
    typer.Option(
        help="where episodes run: threads here, worker processes here, or a Ray cluster (the ray extra); default: "
        "processes for the expert, threads for a model method"
    ),
]
RayAddressOption = Annotated[
    Optional[str], typer.Option(help="the Ray cluster to join (host:port, auto); default: start Ray here")
]
RayCpusOption = Annotated[
    float, typer.Option(min=0.01, help="CPUs of its Ray node an episode reserves (its sandbox's cores)")
]


def open_executor(
    executor: ExecutorName | None,
    ray_address: str | None,
    ray_cpus_per_episode: float,
    method: str,
    *,
    api_key_env: str | None = None,
    azure_endpoint: str | None = None,
    api_version: str | None = None,
    model_path: Path | None = None,
    n_ctx: int | None = None,
    cache_dir: Path | None = None,
    no_cache: bool = False,
    model_timeout: float = DEFAULT_TIMEOUT_S,
    model_retries: int = DEFAULT_MAX_RETRIES,
) -> Executor:
    """The executor the options name (None: :func:`default_executor` for ``method``). On worker processes
    and on Ray, a model method's workers build the model themselves from a :class:`ModelRecipe` (the key read
    from their environment, never sent); the threads use the backbone they are given.

    :raises LearnactError: for Ray options without the ray executor.
    :raises RayUnavailable: for the ray executor when Ray is not installed.
    """
    uses_model = method_spec(method).uses_model
    executor = executor or default_executor(uses_model)
    if executor is not ExecutorName.ray and ray_address is not None:
        raise LearnactError("a Ray address is for the ray executor", "give {executor} ray or no {ray_address}")
    if executor is ExecutorName.threads:
        return LocalExecutor()
    recipe = None
    if uses_model:
        recipe = ModelRecipe(
            api_key_env=api_key_env, azure_endpoint=azure_endpoint, api_version=api_version,
            model_path=str(model_path.expanduser().resolve()) if model_path else None, n_ctx=n_ctx,
            cache_dir=str(cache_dir.expanduser().resolve()) if cache_dir else None, cache=not no_cache,
            timeout_s=model_timeout, max_retries=model_retries,
        )  # fmt: skip
    if executor is ExecutorName.processes:
        return ProcessExecutor(model=recipe)
    from learnact.engine.ray_executor import RayExecutor  # imports Ray (seconds): only when asked for

    return RayExecutor(ray_address, ray_cpus_per_episode, model=recipe)
