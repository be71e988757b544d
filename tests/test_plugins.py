"""Plugins: a third-party distribution adds an environment and a model provider through entry points, with no
fork. Each test installs a real distribution (a module and its ``*.dist-info`` with METADATA and
entry_points.txt) on ``sys.path``, where ``importlib.metadata`` finds it as it finds any installed package;
episodes run through the real Docker sandbox."""

from __future__ import annotations

import importlib
import json
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from learnact.actions.plugins import BACKBONE_GROUP, ENV_GROUP, METHOD_GROUP, PluginError
from learnact.engine.agents import method_spec
from learnact.engine.commands.cli import app
from learnact.engine.llm import ModelDescription, OpenAIBackbone, make_backbone
from learnact.engine.rundir import EPISODES
from learnact.envs import (
    NEUTRAL_PROFILE,
    EnvFamily,
    EnvSpecError,
    UnknownEnvironment,
    env_profile,
    make_env,
    primitive_specs,
    registry,
)
from learnact.envs.pddl import PddlEnv
from learnact.learner.learnact import LearnactConfig

# A real environment and a backbone answering from a script, as a third party would write them against
# learnact's public API.
LAMPS_MODULE = '''
from learnact.engine.agents import Act, Learns, MethodSpec, Policy
from learnact.engine.llm import Backbone, ChatMessage, ChatRequest, ChatResponse, LLMError
from learnact.envs import (
    EnvFamily, EnvProfile, Environment, EnvSpec, EnvSpecError, ParamSpec, PrimitiveSpec, ResetInfo, StepOutcome,
    TaskInfo, UnknownTask,
)

COLOURS = ("red", "green")
BUILT = []  # the model names the backbone factory was given
DESCRIBED = []  # the model descriptions it was given, as JSON
REQUESTS = []  # every request the scripted backbone answered
SCRIPT = ["Action: switch_on('green')", "switch_on('red')"]


class LampRoom(Environment):
    """A room with a red and a green lamp; a task asks for one of them to be switched on."""

    def __init__(self, name):
        self.name = name
        self.goal = None
        self.on = set()

    def tasks(self):
        return [TaskInfo(id=f"lamp-{colour}", type="lamps") for colour in COLOURS]

    def primitives(self):
        lamp = ParamSpec(name="lamp")
        return [PrimitiveSpec(name="switch_on", params=(lamp,), doc="Switch on the lamp of that colour.")]

    def reset(self, task_id):
        ids = [t.id for t in self.tasks()]
        if task_id not in ids:
            raise UnknownTask(task_id, self.name, ids)
        self.goal, self.on = task_id.removeprefix("lamp-"), set()
        return ResetInfo(observation="You are in a room with a red lamp and a green lamp, both off.",
                         goal=f"Your task is to: switch on the {self.goal} lamp.")

    def expert_calls(self):
        yield "switch_on", [self.goal]

    def _perform(self, name, args):
        (lamp,) = args
        if lamp not in COLOURS:  # its own words for a call that does not apply
            return StepOutcome(observation=f"There is no {lamp} lamp here.", valid=False, done=False, success=False,
                               progress=0.0)
        self.on.add(lamp)
        done = self.goal in self.on
        return StepOutcome(observation=f"The {lamp} lamp is on.", valid=True, done=done, success=done,
                           progress=float(done))


def make_lamps(spec: EnvSpec) -> Environment:
    if spec.name != "lamps":
        raise EnvSpecError(spec.name, f"'{spec.name}' has no variants", "use the environment 'lamps'")
    return LampRoom(spec.name)


# The same room registered as a family with its profile: budgets, LearnAct's defaults and its texts (in the
# package lamp_texts: profile/domains/any.txt).
LIT = EnvFamily(
    build=lambda spec: LampRoom(spec.name),
    profile=EnvProfile(benchmark="lamp rooms", window=3, max_steps=4, learn_steps=2,
                       learnact={"style": "decompose", "history": "full"}, texts="lamp_texts"),
)


class ScriptedBackbone(Backbone):
    """Answers with SCRIPT, one line after the other."""

    def __init__(self, model):
        self.identity = f"scripted:{model}"
        self.answers = iter(SCRIPT)

    def complete(self, request: ChatRequest) -> ChatResponse:
        REQUESTS.append(request)
        answer = next(self.answers, None)
        if answer is None:
            raise LLMError(self.identity, "the script has ended")
        return ChatResponse(text=answer, finish_reason="stop")


def make_backbone(model, description):
    BUILT.append(model)
    DESCRIBED.append(description.model_dump_json())
    return ScriptedBackbone(model)


class GoalEcho(Policy):
    """A third party's method: shows the model the goal alone and runs what it answers, minus an 'Action:'."""

    def __init__(self, context):
        self.context = context

    def decide(self, observation):
        request = ChatRequest(model=self.context.model.model, max_tokens=self.context.model.max_tokens,
                              messages=(ChatMessage(role="user", content=self.context.reset.goal),))
        return Act(self.context.backbone.complete(request).text.removeprefix("Action: "))


GOAL_ECHO = MethodSpec(GoalEcho, uses_model=True, max_tokens=64, description="the goal alone, to the model")
LEARNING = MethodSpec(GoalEcho, learns=Learns.notes)


def not_an_environment(spec):
    return "a lamp"


def failing_backbone(model, settings):
    raise RuntimeError("the provider's client is not configured")
'''

Install = Callable[..., None]


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Install]:
    """Installs a distribution: its module ``module`` (``source``) and its metadata declaring
    ``entry_points`` ({group: {name: "module:attribute"}}), in a folder put first on sys.path."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))  # also invalidates importlib's caches
    modules: list[str] = []

    def installer(distribution: str, entry_points: dict[str, dict[str, str]], module: str = "", source: str = ""):
        if module:
            (site / f"{module}.py").write_text(source)
            modules.append(module)
        info = site / f"{distribution.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.0\n")
        sections = [
            f"[{group}]\n" + "".join(f"{name} = {target}\n" for name, target in names.items())
            for group, names in entry_points.items()
        ]
        (info / "entry_points.txt").write_text("\n".join(sections))
        importlib.invalidate_caches()

    yield installer
    for module in modules:
        sys.modules.pop(module, None)
    importlib.invalidate_caches()


@pytest.fixture
def lamps(install: Install):
    """The distribution ``lamp-plugin``: the environment ``lamps`` and the model provider ``scripted``."""
    install(
        "lamp-plugin",
        {ENV_GROUP: {"lamps": "lamp_plugin:make_lamps"}, BACKBONE_GROUP: {"scripted": "lamp_plugin:make_backbone"}},
        "lamp_plugin",
        LAMPS_MODULE,
    )
    return importlib.import_module("lamp_plugin")


LAMP_DOMAIN = "The environment is a room of coloured lamps, each switched on by its colour."


@pytest.fixture
def lit(lamps, install: Install, tmp_path: Path):
    """The distribution ``lit-plugin``: the lamp room as the family ``lit``, with a profile and its texts."""
    texts = tmp_path / "site" / "lamp_texts"
    (texts / "profile" / "domains").mkdir(parents=True)
    (texts / "__init__.py").write_text("")
    (texts / "profile" / "domains" / "any.txt").write_text(LAMP_DOMAIN + "\n")
    install("lit-plugin", {ENV_GROUP: {"lit": "lamp_plugin:LIT"}})
    return lamps


@pytest.fixture(autouse=True)
def no_openai_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)


def scripted_eval(env: str, method: str, out: Path):
    """`learnact eval` of ``method`` on the first task of ``env``, the plugin's scripted model answering."""
    arguments = ["eval", "--env", env, "--method", method, "--model", "scripted:x", "--tasks", "0", "--seeds", "1"]
    return CliRunner().invoke(app, [*arguments, "--no-cache", "--out", str(out), "--json"])


def one_line_error(result) -> str:
    assert "Traceback" not in result.output + result.stderr
    (line,) = result.stderr.strip().splitlines()
    return line


@pytest.mark.docker
@pytest.mark.usefixtures("sandbox_image")
def test_a_plugin_environment_and_model_provider_run_an_episode_through_the_sandbox(tmp_path: Path, lamps) -> None:
    out = tmp_path / "run"
    result = scripted_eval(env="lamps", method="act", out=out)
    assert result.exit_code == 0, result.output + result.stderr
    summary = json.loads(result.stdout)
    assert summary["env"] == "lamps" and summary["method"] == "act" and summary["success_rate"] == 1.0
    (record,) = [json.loads(line) for line in (out / EPISODES).read_text().splitlines()]
    assert record["task"] == "lamp-red" and record["success"] is True and record["ended"] == "done"
    # The plugin's backbone answered every step (the factory got the model after its provider's name) ...
    assert lamps.BUILT == ["x"] and len(lamps.REQUESTS) == 2
    (described,) = [json.loads(text) for text in lamps.DESCRIBED]  # the description, as every process gets it
    assert described["model"] == "scripted:x" and "api_key" not in described
    assert [step["answer"] for step in record["steps"]] == lamps.SCRIPT
    assert lamps.REQUESTS[0].model == "scripted:x" and "switch_on(lamp)" in lamps.REQUESTS[0].messages[0].content
    # ... and each line ran in the sandbox, which called the plugin environment's primitive on the host.
    for step, colour in zip(record["steps"], ("green", "red")):
        assert step["code"] == f"switch_on('{colour}')" and step["result"]["status"] == "ok"
        (call,) = step["result"]["calls"]
        assert call["name"] == "switch_on" and call["args"] == [colour]
        assert call["observation"] == step["observation"] == f"The {colour} lamp is on." and call["valid"] is True
    config = json.loads((out / "config.json").read_text())["run"]
    assert config["model"]["model"] == "scripted:x" and config["model"]["backbone"] == "scripted:x"
    # It gave no profile: the neutral defaults, said once, never PDDL's texts.
    assert config["max_steps"] == NEUTRAL_PROFILE.max_steps
    assert "gives no profile: neutral defaults are used" in result.stderr
    assert "Here is an example" not in lamps.REQUESTS[0].messages[1].content  # no demonstration to show


@pytest.mark.docker
@pytest.mark.usefixtures("sandbox_image")
def test_a_plugin_family_brings_its_profile_to_eval_prompts_and_learning(tmp_path: Path, lit) -> None:
    profile = env_profile("lit")
    assert profile.benchmark == "lamp rooms" and profile.domain_text("lamps") == LAMP_DOMAIN
    out = tmp_path / "run"
    result = scripted_eval(env="lit", method="act", out=out)
    assert result.exit_code == 0, result.output + result.stderr
    assert "gives no profile" not in result.stderr
    assert json.loads((out / "config.json").read_text())["run"]["max_steps"] == 4  # its evaluation budget
    assert LAMP_DOMAIN in lit.REQUESTS[0].messages[0].content  # its domain text in the instruction
    config = LearnactConfig.for_env("lit", samples=1)
    assert (config.style, config.history, config.samples) == ("decompose", "full", 1)


def test_a_plugin_without_a_profile_is_warned_about_once(lamps, caplog: pytest.LogCaptureFixture) -> None:
    registry._warned.clear()
    with caplog.at_level("WARNING", logger="learnact"):
        assert env_profile("lamps") is NEUTRAL_PROFILE and env_profile("lamps") is NEUTRAL_PROFILE
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "'lamps' (lamp-plugin) gives no profile" in warning and "EnvProfile" in warning


def test_a_plugin_profile_of_the_wrong_type_is_named(lamps, install: Install) -> None:
    lamps.BAD = EnvFamily(build=lamps.make_lamps, profile={"window": 3})
    install("bad-profile", {ENV_GROUP: {"badly": "lamp_plugin:BAD"}})
    with pytest.raises(PluginError, match="bad-profile gives a profile of type dict, not an EnvProfile"):
        env_profile("badly")


def test_no_code_outside_a_family_compares_environment_names() -> None:
    """Family knowledge lives in the family's profile: nothing else tests a name for 'alfworld' or 'pddl'."""
    root = Path(__file__).parent.parent
    compared = re.compile(
        r"""startswith\(\s*["'](alfworld|pddl)|[=!]=\s*["'](alfworld|pddl)["']|["'](alfworld|pddl)["']\s*[=!]="""
    )
    found = [
        f"{path.relative_to(root)}:{number}"
        for room in ("engine", "learner", "actions", "sandbox", "envs", "images")
        for path in sorted((root / room).rglob("*.py"))
        if path.parent.name not in ("alfworld", "pddl")
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if compared.search(line)
    ]
    assert found == []


@pytest.mark.docker
@pytest.mark.usefixtures("sandbox_image")
def test_a_plugin_environments_verdict_on_a_call_travels_with_the_call(lamps) -> None:
    program = "switch_on('blue')\nswitch_on('red')\n"
    result = CliRunner().invoke(app, ["sandbox", "exec", "-", "--env", "lamps", "--json"], input=program)
    assert result.exit_code == 0, result.output + result.stderr
    calls = json.loads(result.stdout)["calls"]
    assert [(c["observation"], c["valid"]) for c in calls] == [
        ("There is no blue lamp here.", False),
        ("The red lamp is on.", True),
    ]


@pytest.mark.docker
@pytest.mark.usefixtures("sandbox_image")
def test_a_plugin_method_runs_an_evaluation_through_the_sandbox(tmp_path: Path, lamps, install: Install) -> None:
    install("echo-method", {METHOD_GROUP: {"goal_echo": "lamp_plugin:GOAL_ECHO"}})
    out = tmp_path / "run"
    result = scripted_eval(env="lamps", method="goal_echo", out=out)
    assert result.exit_code == 0, result.output + result.stderr
    summary = json.loads(result.stdout)
    assert summary["method"] == "goal_echo" and summary["success_rate"] == 1.0
    (record,) = [json.loads(line) for line in (out / EPISODES).read_text().splitlines()]
    assert record["method"] == "goal_echo" and [s["code"] for s in record["steps"]] == [
        "switch_on('green')",
        "switch_on('red')",
    ]
    assert all(step["result"]["calls"][0]["valid"] for step in record["steps"])  # each line ran in the sandbox
    assert [r.messages[0].content for r in lamps.REQUESTS] == ["Your task is to: switch on the red lamp."] * 2
    config = json.loads((out / "config.json").read_text())["run"]
    assert config["method"] == "goal_echo" and config["model"]["max_tokens"] == 64  # the method's default
    report = CliRunner().invoke(app, ["report", str(out)])
    assert report.exit_code == 0 and "goal_echo" in report.stdout, report.output


def test_an_unknown_method_is_a_one_line_error_listing_the_plugins_methods(tmp_path: Path, lamps, install: Install):
    install("echo-method", {METHOD_GROUP: {"goal_echo": "lamp_plugin:GOAL_ECHO", "learning": "lamp_plugin:LEARNING"}})
    result = CliRunner().invoke(app, ["eval", "--env", "lamps", "--method", "goal-echo", "--out", str(tmp_path)])
    assert result.exit_code == 2
    line = one_line_error(result)
    assert "unknown method 'goal-echo'" in line and "learnact, goal_echo, learning" in line
    with pytest.raises(PluginError, match="a plugin's method cannot learn yet"):
        method_spec("learning")
    learned = CliRunner().invoke(app, ["learn", "--env", "lamps", "--method", "goal_echo", "--out", str(tmp_path)])
    assert learned.exit_code == 2 and "goal_echo learns nothing" in one_line_error(learned)


def test_envs_list_shows_a_plugin_environment_next_to_the_built_in_ones(lamps) -> None:
    result = CliRunner().invoke(app, ["envs", "list", "--json"])
    assert result.exit_code == 0, result.output + result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["lamps"]["tasks"] == 2 and rows["lamps"]["distribution"] == "lamp-plugin"
    assert [p["name"] for p in rows["lamps"]["primitives"]] == ["switch_on"]
    assert rows["pddl/blockworld"]["distribution"] is None
    assert [p.name for p in primitive_specs("lamps")] == ["switch_on"]


def test_a_plugin_is_imported_only_when_its_name_is_used(lamps) -> None:
    sys.modules.pop("lamp_plugin")
    make_env("pddl/gripper")
    with pytest.raises(UnknownEnvironment, match="known: .*lamps"):
        make_env("lamp")
    assert "lamp_plugin" not in sys.modules
    make_env("lamps")
    assert "lamp_plugin" in sys.modules


def test_a_model_name_holding_a_colon_is_a_server_model_unless_a_provider_has_its_prefix(lamps) -> None:
    backbone = make_backbone(ModelDescription(model="qwen2.5:7b", base_url="http://127.0.0.1:9/v1", cache=False))
    assert isinstance(backbone, OpenAIBackbone) and backbone.model == "qwen2.5:7b"
    assert make_backbone(ModelDescription(model="scripted:qwen2.5:7b", cache=False)).identity == "scripted:qwen2.5:7b"


def test_a_broken_plugin_is_a_one_line_error_naming_it_and_built_in_names_keep_working(
    tmp_path: Path, install: Install
) -> None:
    install("gadget-plugin", {ENV_GROUP: {"gadgets": "gadget_plugin:make"}}, "gadget_plugin", "import gadget_sdk\n")
    result = CliRunner().invoke(app, ["eval", "--env", "gadgets", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    line = one_line_error(result)
    for part in ("'gadgets'", ENV_GROUP, "gadget-plugin", "gadget_plugin:make", "No module named 'gadget_sdk'"):
        assert part in line
    assert "uninstall it" in line
    assert isinstance(make_env("pddl/blockworld"), PddlEnv)
    listed = CliRunner().invoke(app, ["envs", "list", "--json"])
    assert listed.exit_code == 1
    assert "pddl/blockworld" in {row["name"] for row in json.loads(listed.stdout)}
    assert "gadget-plugin" in one_line_error(listed)


def test_a_plugin_cannot_replace_a_built_in_name(install: Install) -> None:
    # Never imported: the module does not even exist.
    install("shadow-plugin", {ENV_GROUP: {"pddl": "shadow_plugin:make"}, BACKBONE_GROUP: {"local": "shadow_plugin:b"}})
    assert isinstance(make_env("pddl/blockworld"), PddlEnv)
    listed = CliRunner().invoke(app, ["envs", "list", "--json"])
    assert listed.exit_code == 1
    line = one_line_error(listed)
    assert "'pddl'" in line and "shadow-plugin" in line and "built-in name" in line
    with pytest.raises(PluginError, match="'local' is a built-in name") as caught:
        make_backbone(ModelDescription(model="local:x", cache=False))
    assert caught.value.distribution == "shadow-plugin" and caught.value.group == BACKBONE_GROUP


def test_two_distributions_declaring_one_name_are_both_named(install: Install) -> None:
    install("twin-one", {ENV_GROUP: {"twin": "twin_one:make"}})
    install("twin-two", {ENV_GROUP: {"twin": "twin_two:make"}})
    with pytest.raises(PluginError, match="declared by 2 distributions \\(twin-one and twin-two\\)"):
        make_env("twin")


def test_a_plugin_that_breaks_its_contract_is_named(lamps, install: Install) -> None:
    install(
        "odd-plugin",
        {ENV_GROUP: {"odd": "lamp_plugin:not_an_environment", "box": "lamp_plugin:COLOURS"},
         BACKBONE_GROUP: {"failing": "lamp_plugin:failing_backbone"}},
    )  # fmt: skip
    with pytest.raises(PluginError, match="odd-plugin returned str for 'odd', not an Environment"):
        make_env("odd")
    with pytest.raises(PluginError, match="names a tuple, not an EnvFamily or a callable"):
        make_env("box")
    with pytest.raises(PluginError, match="RuntimeError: the provider's client is not configured"):
        make_backbone(ModelDescription(model="failing:x", cache=False))
    with pytest.raises(EnvSpecError, match="has no variants"):  # the plugin's own error passes as it is
        make_env("lamps/big")
