"""Constrained output: the grammars an agent step and the learner's create and fix answers are asked under, what
llama.cpp makes of them, and how a request carries one to the local model and to a server."""

from __future__ import annotations

import ast
import ctypes
import functools
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from llm_server import Answer, ScriptedServer, Status

from learnact.actions.models import ActionSet, LearnedAction
from learnact.engine.agents.policy import ModelPolicy, PolicyContext
from learnact.engine.llm import ChatMessage, ChatRequest, LLMError, OpenAIBackbone, cache_key, local
from learnact.engine.llm.grammar import (
    MAX_FUNCTION_LINES,
    MAX_LIST_ITEMS,
    GrammarError,
    call_grammar,
    definitions_grammar,
)
from learnact.engine.records import ModelSettings
from learnact.envs import EnvSpec, make_env
from learnact.envs.pddl.env import DOMAINS

STACK_ON = 'def stack_on(block, target):\n    """Stack it."""\n    Pickup(block)\n    Stack(block, target)\n'
LEARNED = ActionSet(actions=(LearnedAction(name="stack_on", code=STACK_ON, example="stack_on('b1', 'b2')"),))


@pytest.fixture(autouse=True)
def no_openai_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)


def embedded_model() -> Path:
    try:
        return local.ensure_model(progress=False)
    except LLMError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def vocabulary() -> Iterator[object]:
    """The embedded model's vocabulary alone (no weights: a fraction of a second), which llama.cpp parses a
    grammar against."""
    import llama_cpp

    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = llama_cpp.llama_model_load_from_file(str(embedded_model()).encode(), params)
    assert model, "llama.cpp could not load the embedded model's vocabulary"
    yield llama_cpp.llama_model_get_vocab(model)
    llama_cpp.llama_model_free(model)


def parses(vocabulary: object, grammar: str) -> bool:
    import llama_cpp

    sampler = llama_cpp.llama_sampler_init_grammar(vocabulary, grammar.encode(), b"root")
    if sampler:
        llama_cpp.llama_sampler_free(sampler)
    return bool(sampler)


def accepts(vocabulary: object, grammar: str, text: str) -> bool:
    """Whether llama.cpp's grammar sampler lets the model write ``text`` whole and then end its answer: each
    token of ``text`` in turn, then the end of generation, must keep a finite logit under the grammar."""
    import llama_cpp

    sampler = llama_cpp.llama_sampler_init_grammar(vocabulary, grammar.encode(), b"root")
    assert sampler, grammar
    raw = text.encode()
    tokens = (llama_cpp.llama_token * (len(raw) + 8))()
    count = llama_cpp.llama_tokenize(vocabulary, raw, len(raw), tokens, len(tokens), False, False)
    end = llama_cpp.llama_vocab_eos(vocabulary)
    try:
        for token in [*tokens[:count], end]:
            data = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(token, 0.0, 0.0))
            llama_cpp.llama_sampler_apply(sampler, ctypes.byref(llama_cpp.llama_token_data_array(data, 1, -1, False)))
            if data[0].logit == float("-inf"):
                return False
            if token != end:
                llama_cpp.llama_sampler_accept(sampler, token)
        return True
    finally:
        llama_cpp.llama_sampler_free(sampler)


def step_grammars() -> list[str]:
    """Every built-in PDDL domain's agent grammar: act and react, with primitives only and with a learned set."""
    grammars = []
    for domain in DOMAINS:
        names = [p.name for p in make_env(EnvSpec(name=f"pddl/{domain}")).primitives()]
        grammars += [call_grammar(names, thoughts) for thoughts in (False, True)]
        grammars.append(call_grammar(["stack_on", *names]))
    return grammars


def test_every_grammar_learnact_sends_is_parsed_by_llama_cpp(vocabulary: object) -> None:
    for grammar in [*step_grammars(), definitions_grammar(1), definitions_grammar(8)]:
        assert parses(vocabulary, grammar), grammar
    assert not parses(vocabulary, 'root ::= step\nstep ::= "Pickup(" args'), "an undefined rule must be refused"


def test_a_step_grammar_names_exactly_the_available_actions_learned_first() -> None:
    grammar = call_grammar(["stack_on", "Pickup", "Stack", "Pickup"])
    assert 'name ::= "stack_on" | "Pickup" | "Stack"\n' in grammar  # once each, in order
    assert "Think" not in grammar and 'root ::= step | "Think: "' in call_grammar(["Pickup"], thoughts=True)
    with pytest.raises(GrammarError, match="not a Python identifier"):
        call_grammar(["Pickup", 'x" | "anything'])
    with pytest.raises(GrammarError, match="at least one"):
        call_grammar([])


def test_a_step_is_one_call_of_an_available_action_with_a_bounded_list(vocabulary: object) -> None:
    """A small model that repeats a list's items would write to its token limit, and a cut answer holds no call."""
    grammar = call_grammar(["clear_tower", "Pickup"])
    blocks = ", ".join(f"'b{i}'" for i in range(MAX_LIST_ITEMS))
    assert accepts(vocabulary, grammar, f"clear_tower([{blocks}])")
    assert not accepts(vocabulary, grammar, f"clear_tower([{blocks}, 'b0'])")
    assert accepts(vocabulary, grammar, "Action: Pickup('b1')")
    assert not accepts(vocabulary, grammar, "Putdown('b1')"), "not an available action"
    assert not accepts(vocabulary, grammar, "Pickup('b1')\nPickup('b2')"), "two calls"
    assert not accepts(vocabulary, grammar, "Pickup(b1)"), "a name, not a literal"
    # a task's objects bound its lists further, never beyond MAX_LIST_ITEMS
    three = call_grammar(["clear_tower"], max_list_items=3)
    assert accepts(vocabulary, three, "clear_tower(['b3', 'b2', 'b1'])")
    assert not accepts(vocabulary, three, "clear_tower(['b3', 'b2', 'b1', 'b3'])")
    assert accepts(vocabulary, call_grammar(["clear_tower"], max_list_items=1), "clear_tower(['b3'])")
    assert call_grammar(["clear_tower"], max_list_items=MAX_LIST_ITEMS + 5) == call_grammar(["clear_tower"])
    with pytest.raises(GrammarError, match="at least one value"):
        call_grammar(["clear_tower"], max_list_items=0)


def test_a_function_of_the_learner_has_a_bounded_number_of_lines(vocabulary: object) -> None:
    """Gripper's learner repeated one line about 330 times in one function, to its token limit."""

    def answer(lines: int) -> str:
        return "```python\ndef carry(ball):\n" + '    """Carry."""\n' + "    pick(ball)\n" * (lines - 1) + "```"

    grammar = definitions_grammar(2)
    assert accepts(vocabulary, grammar, answer(MAX_FUNCTION_LINES))
    assert not accepts(vocabulary, grammar, answer(MAX_FUNCTION_LINES + 1))
    assert not accepts(vocabulary, grammar, answer(3)[: -len("```")]), "the block must be closed to end"
    assert not accepts(vocabulary, grammar, "```python\nprint(1)\n```"), "a top-level statement"
    two = answer(3).replace("```python\n", "").replace("```", "")
    assert accepts(vocabulary, grammar, f"```python\n{two}\n{two}```")
    assert not accepts(vocabulary, grammar, f"```python\n{two}\n{two}\n{two}```"), "more functions than kept"


def test_an_answer_of_definitions_is_one_python_block_of_at_most_the_functions_kept() -> None:
    """The closing fence lets the model end its answer; the count bounds it (a model that cannot close the block
    writes functions to the token limit)."""
    assert definitions_grammar(8).startswith('root ::= "```python\\n" function (blank* function){0,7} blank* "```"\n')
    assert definitions_grammar(1).startswith('root ::= "```python\\n" function blank* "```"\n')
    with pytest.raises(GrammarError, match="at least one"):
        definitions_grammar(0)


def test_the_grammar_is_part_of_the_cache_key() -> None:
    request = ChatRequest(model="m", messages=(ChatMessage(role="user", content="hi"),))
    constrained = request.model_copy(update={"grammar": definitions_grammar(8)})
    assert cache_key("b", request) != cache_key("b", constrained) == cache_key("b", constrained.model_copy())


def policy(backbone: OpenAIBackbone, react: bool = False, actions: ActionSet | None = None) -> ModelPolicy:
    env = make_env(EnvSpec(name="pddl/blockworld"))
    reset = env.reset("blockworld-01")
    settings = ModelSettings(model="m", base_url=backbone.base_url)
    return ModelPolicy(PolicyContext(env, "blockworld", reset, backbone, settings, actions=actions), react=react)


def test_an_agent_step_is_asked_under_the_grammar_of_its_actions_and_a_server_gets_it() -> None:
    with ScriptedServer(responder=lambda body: Answer("stack_on('b1', 'b2')")) as server:
        backbone = OpenAIBackbone("m", base_url=server.base_url, timeout_s=5.0, max_retries=0)
        primitives = ["Pickup", "Putdown", "Stack", "Unstack"]
        policy(backbone, actions=LEARNED).decide("b1 is on the table.")
        policy(backbone, react=True).decide("b1 is on the table.")
        backbone.close()
    learned_step, react_step = (r.body for r in server.received)
    blocks = len(make_env(EnvSpec(name="pddl/blockworld")).reset("blockworld-01").objects)
    assert 0 < blocks < MAX_LIST_ITEMS  # a list holds at most the task's objects
    assert learned_step["grammar"] == call_grammar(["stack_on", *primitives], max_list_items=blocks)
    assert react_step["grammar"] == call_grammar(primitives, thoughts=True, max_list_items=blocks)


def test_an_answer_without_a_call_is_told_to_call_any_action_when_actions_are_learned() -> None:
    from learnact.engine.agents.policy import NoCode

    with ScriptedServer(responder=lambda body: Answer("I would stack b1.")) as server:
        backbone = OpenAIBackbone("m", base_url=server.base_url, timeout_s=5.0, max_retries=0)
        learned, plain = (policy(backbone, actions=a).decide("b1 is on the table.") for a in (LEARNED, None))
        backbone.close()
    assert isinstance(learned, NoCode) and isinstance(plain, NoCode)
    assert "one line that calls one action, learned or primitive, such as stack_on('b1', 'b2')" in learned.message
    assert "one line that calls one primitive action, such as" in plain.message


def test_openais_api_and_azure_are_not_sent_a_grammar_they_would_refuse() -> None:
    assert not OpenAIBackbone("m", api_key="sk-test").sends_grammar
    azure = OpenAIBackbone("m", azure_endpoint="https://x.openai.azure.com", api_key="k", api_version="2024-06-01")
    assert not azure.sends_grammar
    assert OpenAIBackbone("m", base_url="http://127.0.0.1:8080/v1").sends_grammar  # llama.cpp's server, vLLM…


def test_a_server_that_refuses_the_grammar_says_so_and_nothing_is_retried_without_it() -> None:
    with ScriptedServer([Status(400, "unknown field: grammar")]) as server:
        backbone = OpenAIBackbone("m", base_url=server.base_url, timeout_s=5.0, max_retries=0)
        request = ChatRequest(model="m", messages=(ChatMessage(role="user", content="hi"),), grammar="root ::= [a-z]+")
        with pytest.raises(LLMError, match=r"HTTP 400.*unknown field: grammar.*carried a grammar"):
            backbone.complete(request)
        backbone.close()
    assert len(server.received) == 1 and server.received[0].body["grammar"] == "root ::= [a-z]+"


@pytest.mark.slow
def test_the_real_model_under_the_step_grammar_answers_one_call_of_an_available_action() -> None:
    import llama_cpp

    backbone = local.LocalBackbone(embedded_model(), n_ctx=1024, progress=False)
    try:
        names = ["Pickup", "Putdown", "Stack", "Unstack"]
        messages = (
            ChatMessage(role="system", content="Answer with one call, such as Pickup('b2')."),
            ChatMessage(role="user", content="b1 is on the table, clear. The hand is empty. Goal: b1 on b2."),
        )
        request = ChatRequest(model="local", messages=messages, max_tokens=12, grammar=call_grammar(names))
        answer = backbone.complete(request)
        line = answer.text.removeprefix("Action: ")
        assert "\n" not in answer.text and re.fullmatch(r"(Pickup|Putdown|Stack|Unstack)\(.*\)", line), answer.text
        call = ast.parse(line, mode="eval").body
        assert isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in names
        assert all(isinstance(a, ast.Constant) for a in call.args)
        assert answer.finish_reason == "stop"  # the grammar ended it, not the token limit
        # The count trimming relies on is the model's own, template included: never below what it evaluated.
        assert backbone.count_tokens(messages) >= answer.usage.prompt_tokens
        # Where the model's best token is refused (it begins with prose), the grammar is applied to every
        # candidate, and the answer is the one llama-cpp-python's own sampler (the grammar on every candidate at
        # every token) gives.
        write = (ChatMessage(role="user", content="Write a Python function pick(b) that calls Pickup(b) twice."),)
        free = backbone.complete(ChatRequest(model="local", messages=write, max_tokens=6))
        constrained = ChatRequest(model="local", messages=write, max_tokens=6, grammar=definitions_grammar(8))
        checked = backbone.complete(constrained)
        assert not free.text.startswith("def") and checked.text.startswith("```python\ndef ")
        # Asked for one function, the model writes it and closes the block: the grammar ends the answer.
        one = backbone.complete(constrained.model_copy(update={"max_tokens": 120, "grammar": definitions_grammar(1)}))
        assert one.finish_reason == "stop" and one.text.rstrip().endswith("```") and one.text.count("def ") == 1
        backbone._llm._init_sampler = functools.partial(llama_cpp.Llama._init_sampler, backbone._llm)
        assert backbone.complete(constrained.model_copy(update={"seed": 1})).text == checked.text
        del backbone._llm._init_sampler
        with pytest.raises(LLMError, match="cannot parse the request's grammar"):
            backbone.complete(request.model_copy(update={"grammar": "root ::= undefined_rule"}))
    finally:
        backbone.close()
