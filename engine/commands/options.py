"""The option groups that more than one command takes, each declared once.

A group is a frozen pydantic model whose fields carry their ``typer.Option``; a command takes the group as one
parameter annotated with its class and is decorated with :func:`with_groups`, which splices the group's
options into the signature Typer reads and hands the command the group built from them. So ``eval`` and
``learn`` share the model, sandbox, environment, executor and output options without a second declaration,
and each group turns its options into the library's own description of them (a :class:`ModelDescription`,
a :class:`SandboxConfig`, an :class:`EnvSpec`, an :class:`Executor`).
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

import typer
from pydantic import BaseModel, ConfigDict

from learnact.actions import LearnactError
from learnact.engine.agents import method_spec
from learnact.engine.llm import DEFAULT_SERVER_MODEL, LOCAL, ModelDescription, PriceTable
from learnact.engine.llm.openai_backbone import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT_S
from learnact.engine.records import Method, ModelSettings
from learnact.engine.rundir import RunDir
from learnact.engine.runs.executor import Executor, ExecutorName, LocalExecutor, default_executor
from learnact.engine.runs.planning import DEFAULT_TEMPERATURE, RunChoice
from learnact.envs import EnvSpec
from learnact.envs.pddl.family import expand_problem_paths
from learnact.sandbox import BackendName, RuntimeName, SandboxConfig

Command = TypeVar("Command", bound=Callable[..., Any])


class OptionGroup(BaseModel):
    """Options a command takes together; its fields are ``Annotated[type, typer.Option(...)]``."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def with_groups(command: Command) -> Command:
    """``command`` with each parameter annotated with an :class:`OptionGroup` subclass replaced, in the
    signature Typer reads, by that group's options (at its place); when called, the command gets the group
    built from them. Typer reads the options' names, types and help from the ``__signature__`` and the
    ``__annotations__`` set here."""
    hints = typing.get_type_hints(command, include_extras=True)
    groups = {name: hint for name, hint in hints.items() if isinstance(hint, type) and issubclass(hint, OptionGroup)}
    parameters: list[inspect.Parameter] = []
    for parameter in inspect.signature(command).parameters.values():
        if parameter.name not in groups:
            parameters.append(parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints[parameter.name]))
            continue
        group = groups[parameter.name]
        fields = typing.get_type_hints(group, include_extras=True)
        # The required options first (``--env`` before the data it reads), then in the group's order.
        for name, field in sorted(group.model_fields.items(), key=lambda item: not item[1].is_required()):
            default = inspect.Parameter.empty if field.is_required() else field.default
            option = inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=fields[name])
            parameters.append(option)

    @functools.wraps(command)
    def grouped(**options: Any) -> Any:
        for name, group in groups.items():
            options[name] = group(**{field: options.pop(field) for field in group.model_fields})
        return command(**options)

    grouped.__signature__ = inspect.Signature(parameters, return_annotation=None)  # type: ignore[attr-defined]
    grouped.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
    return typing.cast(Command, grouped)


class EnvDataOptions(OptionGroup):
    """Where an environment's data is: external PDDL files, the ALFWorld games and their split."""

    pddl_domain: Annotated[
        Optional[Path], typer.Option("--pddl-domain", help="external PDDL domain file (--env pddl)")
    ] = None
    pddl_problems: Annotated[
        Optional[list[Path]],
        typer.Option(
            "--pddl-problems",
            help="external PDDL problem files or folders of them (--env pddl); several may follow one flag",
        ),
    ] = None
    alfworld_data: Annotated[
        Optional[Path], typer.Option("--alfworld-data", help="folder holding json_2.1.1/ (default: $ALFWORLD_DATA)")
    ] = None
    split: Annotated[str, typer.Option("--split", help="ALFWorld split")] = EnvSpec.model_fields["split"].default

    def spec(self, name: str, more_problems: Sequence[Path] = ()) -> EnvSpec:
        """The EnvSpec of the environment ``name`` with this data (``more_problems`` after the given ones; problem
        folders expanded to their files).

        :raises EnvSpecError: for a problem folder without ``.pddl`` files.
        """
        problems = [*(self.pddl_problems or ()), *more_problems]
        return EnvSpec(
            name=name,
            pddl_domain=str(self.pddl_domain) if self.pddl_domain else None,
            pddl_problems=expand_problem_paths(problems, self.pddl_domain),
            alfworld_data=str(self.alfworld_data) if self.alfworld_data else None,
            split=self.split,
        )


class EnvOptions(EnvDataOptions):
    """The environment a run is on, and its data (a shell's ``--pddl-problems p/*.pddl`` included)."""

    env: Annotated[
        str, typer.Option(help="pddl/<domain>, pddl (with --pddl-domain/--pddl-problems), alfworld or alfworld/<type>")
    ]
    more_problems: Annotated[
        Optional[list[Path]],
        typer.Argument(hidden=True, metavar="PDDL_PROBLEM", help="more --pddl-problems (`--pddl-problems p/*.pddl`)"),
    ] = None

    def run_spec(self) -> EnvSpec:
        """The EnvSpec these options describe.

        :raises LearnactError: for a word after the options that no --pddl-problems precedes.
        :raises EnvSpecError: for a problem folder without ``.pddl`` files.
        """
        if self.more_problems and not self.pddl_problems:
            raise LearnactError(
                f"unexpected argument {self.more_problems[0]}",
                "only {pddl_problems} takes several values (`--pddl-problems FILE... | DIR`)",
            )
        return self.spec(self.env, self.more_problems or ())


class ModelOptions(OptionGroup):
    """The language model of a model method, how it is asked, and what its answers cost."""

    model: Annotated[
        Optional[str],
        typer.Option(
            "--model",
            help=f"model of a model method (a server's model or Azure deployment); '{LOCAL}' runs one in process; "
            f"PROVIDER:MODEL a provider plugin's (default: {DEFAULT_SERVER_MODEL} when an API key or a server is set)",
        ),
    ] = None
    model_path: Annotated[
        Optional[Path],
        typer.Option("--model-path", help=f"a GGUF file for --model {LOCAL} instead of the embedded model"),
    ] = None
    n_ctx: Annotated[
        Optional[int],
        typer.Option(
            "--n-ctx",
            min=256,
            help=f"the context of --model {LOCAL} in tokens (default: what the model was trained for, at most 32768);"
            " for a server model, the context its prompts are trimmed to (default: not trimmed by tokens)",
        ),
    ] = None
    base_url: Annotated[
        Optional[str], typer.Option("--base-url", help="an OpenAI-compatible server (else $OPENAI_BASE_URL)")
    ] = None
    api_key_env: Annotated[
        Optional[str],
        typer.Option(
            "--api-key-env",
            help="the environment variable holding the API key (default: OPENAI_API_KEY; Azure: AZURE_OPENAI_API_KEY)",
        ),
    ] = None
    azure_endpoint: Annotated[
        Optional[str],
        typer.Option(
            "--azure-endpoint", help="an Azure OpenAI endpoint (else $AZURE_OPENAI_ENDPOINT when no base URL)"
        ),
    ] = None
    api_version: Annotated[
        Optional[str], typer.Option("--api-version", help="the Azure OpenAI API version (else $OPENAI_API_VERSION)")
    ] = None
    temperature: Annotated[float, typer.Option("--temperature", min=0.0, max=2.0, help="sampling temperature")] = (
        DEFAULT_TEMPERATURE
    )
    max_tokens: Annotated[
        Optional[int],
        typer.Option(
            "--max-tokens",
            min=1,
            help=f"longest answer in tokens (default: {ModelSettings.model_fields['max_tokens'].default}; "
            f"{method_spec(Method.code_as_policy).max_tokens} code_as_policy)",
        ),
    ] = None
    cache_dir: Annotated[
        Optional[Path],
        typer.Option("--cache-dir", help="the response cache's folder (default: $XDG_CACHE_HOME/learnact)"),
    ] = None
    no_cache: Annotated[bool, typer.Option("--no-cache", help="ask the model every time; store nothing")] = False
    price_file: Annotated[
        Optional[Path],
        typer.Option(
            "--price-file",
            help='JSON prices added to the built-in table: {"MODEL": {"input_per_1m": USD, "output_per_1m": USD}}',
        ),
    ] = None
    model_timeout: Annotated[
        float,
        typer.Option(
            "--model-timeout",
            envvar="LEARNACT_MODEL_TIMEOUT",
            min=1.0,
            help="seconds one request to a model server may take in all (connect, send, the whole answer)",
        ),
    ] = DEFAULT_TIMEOUT_S
    model_retries: Annotated[
        int,
        typer.Option(
            "--model-retries",
            envvar="LEARNACT_MODEL_RETRIES",
            min=0,
            max=20,
            help="retries of a request that timed out, could not connect, or got 408, 409, 429 or 5xx",
        ),
    ] = DEFAULT_MAX_RETRIES

    def description(self) -> ModelDescription:
        """How to build the model these options name (unresolved: :meth:`ModelDescription.resolved`)."""
        return ModelDescription(
            model=self.model,
            base_url=self.base_url,
            api_key_env=self.api_key_env,
            azure_endpoint=self.azure_endpoint,
            api_version=self.api_version,
            model_path=str(self.model_path) if self.model_path else None,
            n_ctx=self.n_ctx,
            cache_dir=str(self.cache_dir) if self.cache_dir else None,
            cache=not self.no_cache,
            timeout_s=self.model_timeout,
            max_retries=self.model_retries,
        )

    def prices(self) -> PriceTable | None:
        """The price table of the cost estimate (None: the built-in one).

        :raises PriceFileError: when the price file cannot be read or holds no table of prices.
        """
        return PriceTable.from_file(self.price_file) if self.price_file is not None else None


class SandboxOptions(OptionGroup):
    """Where model-written code runs."""

    backend: Annotated[
        BackendName,
        typer.Option(
            "--backend",
            help="sandbox backend: docker, bwrap (bubblewrap, for machines without Docker), or process (an rlimited"
            " child; weaker: no file-system isolation)",
        ),
    ] = SandboxConfig.model_fields["backend"].default
    runtime: Annotated[
        RuntimeName, typer.Option("--runtime", help="OCI runtime of the containers; runsc is gVisor")
    ] = SandboxConfig.model_fields["runtime"].default

    def config(self, **limits: Any) -> SandboxConfig:
        """The sandbox configuration of these options and ``limits`` (other :class:`SandboxConfig` fields).

        :raises pydantic.ValidationError: for a limit out of range.
        """
        return SandboxConfig(backend=self.backend, runtime=self.runtime, **limits)


class ExecutorOptions(OptionGroup):
    """Where episodes run, and how many at a time."""

    workers: Annotated[
        int,
        typer.Option(
            min=1, help="episodes run in parallel, each with its own sandbox (learn: learnact's scoring episodes)"
        ),
    ] = 1
    executor: Annotated[
        Optional[ExecutorName],
        typer.Option(
            help="where episodes run: threads here, worker processes here, or a Ray cluster (the ray extra); "
            "default: processes for the expert, threads for a model method"
        ),
    ] = None
    ray_address: Annotated[
        Optional[str], typer.Option(help="the Ray cluster to join (host:port, auto); default: start Ray here")
    ] = None
    ray_cpus_per_episode: Annotated[
        float, typer.Option(min=0.01, help="CPUs of its Ray node an episode reserves (its sandbox's cores)")
    ] = 1.0

    def chosen(self, method: str) -> ExecutorName:
        """The executor the options name, else :func:`default_executor`'s for ``method``."""
        return self.executor or default_executor(method_spec(method).uses_model)

    def open(self, method: str, model: ModelDescription | None) -> Executor:
        """The executor the options name for ``method``; on worker processes and on Ray, a model method's workers
        build ``model`` (resolved, keyless) themselves; the threads use the backbone they are given.

        :raises LearnactError: for Ray options without the ray executor.
        :raises RayUnavailable: for the ray executor when Ray is not installed.
        """
        executor = self.chosen(method)
        if executor is not ExecutorName.ray and self.ray_address is not None:
            raise LearnactError("a Ray address is for the ray executor", "give {executor} ray or no {ray_address}")
        if executor is ExecutorName.threads:
            return LocalExecutor()
        if executor is ExecutorName.processes:
            from learnact.engine.runs.process_executor import ProcessExecutor

            return ProcessExecutor(model=model)
        from learnact.engine.runs.ray_executor import RayExecutor  # imports Ray (seconds): only when asked for

        return RayExecutor(self.ray_address, self.ray_cpus_per_episode, model=model)


class OutputOptions(OptionGroup):
    """Where a run keeps its results, and what the command prints."""

    out: Annotated[Optional[Path], typer.Option(help="run directory; re-running with the same one resumes")] = None
    json_output: Annotated[bool, typer.Option("--json", help="print only the summary as JSON")] = False

    def run_dir(self, default: str) -> Path:
        """The run directory: ``--out``, else ``runs/<default>`` (its slashes made dashes), checked usable before
        anything runs.

        :raises RunDirError: when it cannot be used (a file, a folder of another kind, one another run holds).
        """
        out = self.out or Path("runs") / default.replace("/", "-")
        RunDir(out).check_usable()
        return out


def run_choice(
    env: EnvOptions, method: str, model: ModelOptions, sandbox: SandboxOptions, max_steps: int | None
) -> RunChoice:
    """The run that a command's options name, the same for ``eval`` and ``learn``.

    :raises LearnactError: when the options name no usable environment (see :meth:`EnvOptions.run_spec`).
    """
    return RunChoice(
        env=env.run_spec(),
        method=method,
        model=model.description(),
        temperature=model.temperature,
        max_tokens=model.max_tokens,
        max_steps=max_steps,
        sandbox=sandbox.config(),
    )
