"""Planning a run in Python (the README's example, run as written), the one keyless model description every
process builds its backbone from, and the one default-model rule of the CLI, the library and `.ci/demo`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from llm_server import Answer, ScriptedServer

from learnact.engine import ModelDescription, RunChoice, plan_evaluation, plan_learning
from learnact.engine.agents import call_code
from learnact.engine.llm import (
    DEFAULT_SERVER_MODEL,
    LOCAL,
    BackboneConfigError,
    CachedBackbone,
    OpenAIBackbone,
    make_backbone,
)
from learnact.engine.records import Method, ModelSettings
from learnact.engine.runs.planning import EXPERT_MAX_STEPS
from learnact.envs import EnvSpec, env_profile, make_env

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = EnvSpec(name="pddl/blockworld")
SERVER_VARIABLES = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY")


@pytest.fixture
def no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SERVER_VARIABLES:
        monkeypatch.delenv(name, raising=False)


class ExpertPlayer:
    """Answers each request with the next line of the expert's plan of blockworld-01, counted per seed."""

    def __init__(self) -> None:
        env = make_env(BLOCKS)
        env.reset("blockworld-01")
        self.plan = [call_code(name, args) for name, args in env.expert_calls()]
        self.asked: dict[int, int] = {}

    def __call__(self, body: dict) -> Answer:
        step = self.asked.get(body["seed"], 0)
        self.asked[body["seed"]] = step + 1
        return Answer(self.plan[step] if step < len(self.plan) else "Pickup('b9')")


def readme_example() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Planning a run in Python") :]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found is not None
    return found.group(1)


@pytest.mark.usefixtures("no_server")
def test_the_readme_example_acts_on_blockworld_with_the_methods_and_environments_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with ScriptedServer(responder=ExpertPlayer()) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-readme")
        exec(compile(readme_example(), "README.md", "exec"), {"__name__": "readme"})
    assert capsys.readouterr().out == "act on blockworld: 100% of 3 episodes\n"
    requests = [received.body for received in server.received]
    assert {(r["model"], r["max_tokens"], r["temperature"]) for r in requests} == {(DEFAULT_SERVER_MODEL, 256, 0.0)}
    assert sorted({r["seed"] for r in requests}) == [0, 1, 2]  # a model method's three seeds
    config = json.loads((tmp_path / "runs" / "blockworld-act" / "config.json").read_text())
    assert config["run"]["max_steps"] == env_profile("pddl/blockworld").max_steps
    assert config["run"]["model"]["backbone"] == f"openai-compatible {server.base_url}"
    assert "sk-readme" not in (tmp_path / "runs" / "blockworld-act" / "config.json").read_text()


@pytest.mark.usefixtures("no_server")
def test_plans_apply_the_defaults_of_the_method_and_the_environment() -> None:
    expert = plan_evaluation(RunChoice(env=BLOCKS, method=Method.expert), tasks="0-1")
    assert expert.model is None and expert.config.run.model is None
    assert expert.config.run.max_steps == EXPERT_MAX_STEPS and expert.config.seeds == (0,)
    assert expert.config.tasks == ("blockworld-01", "blockworld-02")
    described = ModelDescription(model="m", base_url="http://x/v1")
    program = plan_evaluation(RunChoice(env=BLOCKS, method=Method.code_as_policy, model=described))
    assert program.config.run.model == ModelSettings(model="m", base_url="http://x/v1", max_tokens=1024)
    assert program.config.seeds == (0, 1, 2)
    learning = plan_learning(RunChoice(env=BLOCKS, method=Method.learnact, model=ModelDescription(model=LOCAL)), seed=1)
    assert learning.run.max_steps == env_profile("pddl/blockworld").learn_steps
    assert learning.split.seed == 1 and learning.model.model == LOCAL
    with pytest.raises(BackboneConfigError, match="no language model"):
        plan_evaluation(RunChoice(env=BLOCKS, method=Method.act))


def test_the_description_is_json_without_the_key_and_every_process_resolves_it_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_KEY", "sk-secret")
    description = ModelDescription(model="m", base_url="http://127.0.0.1:9/v1", api_key_env="MY_KEY")
    shipped = description.model_dump_json()
    assert "sk-secret" not in shipped and ModelDescription.model_validate_json(shipped) == description
    assert description.resolved().resolved() == description.resolved()
    built = make_backbone(ModelDescription.model_validate_json(shipped).model_copy(update={"cache": False}))
    assert isinstance(built, OpenAIBackbone) and built.identity == "openai-compatible http://127.0.0.1:9/v1"
    cached = make_backbone(description.model_copy(update={"cache_dir": str(tmp_path)}), built.identity)
    assert isinstance(cached, CachedBackbone)
    cached.close()
    with pytest.raises(BackboneConfigError, match="not the run's openai-compatible http://elsewhere"):
        make_backbone(description, "openai-compatible http://elsewhere/v1")
    monkeypatch.delenv("MY_KEY")
    with pytest.raises(BackboneConfigError, match="MY_KEY that holds the API key is not set"):
        make_backbone(description)


@pytest.mark.parametrize(
    ("variables", "chosen"),
    [
        ({}, LOCAL),
        ({"OPENAI_API_KEY": "sk"}, DEFAULT_SERVER_MODEL),
        ({"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}, DEFAULT_SERVER_MODEL),
        ({"AZURE_OPENAI_ENDPOINT": "https://x", "AZURE_OPENAI_API_KEY": "k"}, DEFAULT_SERVER_MODEL),
        ({"AZURE_OPENAI_ENDPOINT": "https://x"}, LOCAL),
    ],
)
def test_the_demo_chooses_its_model_by_the_librarys_rule_before_learnact_is_installed(
    variables: dict[str, str], chosen: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in SERVER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    # The demo's own line, run by the interpreter the demo finds before any virtualenv exists.
    line = next(line for line in (ROOT / ".ci" / "demo").read_text().splitlines() if "$(python3" in line)
    assert "python3 -I engine/llm/choice.py" in line
    printed = subprocess.run(
        [sys.executable, "-I", str(ROOT / "engine" / "llm" / "choice.py")], capture_output=True, text=True, check=True
    ).stdout
    assert printed == chosen + "\n"
    if chosen == LOCAL:  # the CLI names no model of its own then: it says what to give
        with pytest.raises(BackboneConfigError, match="no language model"):
            ModelDescription().resolved()
    else:
        assert ModelDescription().resolved().model == chosen
