"""Natural-language text for PDDL tasks, in the style of AgentBoard's PDDL environment.

A *profile* gives a known domain its fact templates (AgentBoard's ``predicate_map`` wording) and
its primitives (LearnAct's names and parameter names: ``Pickup(block)``, ``fill_shot(shot, ...)``,
``put_away(object, container)``, in the PDDL parameter order). Departures from AgentBoard's table,
which is one dictionary shared by every domain: templates are per domain, so its collisions are
gone (``holding``, ``free`` and ``clear`` meant different things in different domains), and the
templates it got wrong are fixed (barman ``used`` and ``holding``, gripper ``carry`` read the
arguments the wrong way round or printed an action). Facts are not ``str.capitalize``-d, since that
would rewrite object names (``B1``) that the agent must pass back verbatim.

Any other typed STRIPS domain gets generic text: ``on(a, b) holds.`` and primitives named after
its actions. Primitive docstrings are generated from the schema itself, so they state exactly the
preconditions and effects that the simulator enforces.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from learnact.envs.base import ParamSpec, PrimitiveSpec

from .model import ROOT_TYPE, Atom, Domain, PddlError, Schema
from .simulator import Unmet


@dataclass(frozen=True)
class ActionText:
    primitive: str
    params: tuple[str, ...]
    summary: str


@dataclass(frozen=True)
class Profile:
    domain: str
    pddl_names: frozenset[str]
    facts: dict[str, str]
    actions: dict[str, ActionText] = field(default_factory=dict)


def _a(primitive: str, params: str, summary: str) -> ActionText:
    return ActionText(primitive, tuple(params.split()), summary)


PROFILES: dict[str, Profile] = {
    "blockworld": Profile(
        "blockworld",
        frozenset({"blockworld", "blocksworld", "blocksworld-4ops", "blocks"}),
        {
            "on": "{0} is on {1}.",
            "clear": "{0} is clear.",
            "arm-empty": "Your arm is empty.",
            "holding": "You are holding {0}.",
            "on-table": "{0} is on the table.",
        },
        {
            "pickup": _a("Pickup", "block", "Pick up a block from the table."),
            "putdown": _a("Putdown", "block", "Put down the block you hold on the table."),
            "stack": _a("Stack", "block1 block2", "Stack the block you hold (block1) on block2."),
            "unstack": _a("Unstack", "block1 block2", "Unstack block1 from the top of block2."),
        },
    ),
    "tyreworld": Profile(
        "tyreworld",
        frozenset({"tyreworld", "tireworld"}),
        {
            "isopen": "{0} is open.",
            "closed": "{0} is closed.",
            "have": "You have {0}.",
            "in": "{0} is in {1}.",
            "loose": "The nut {0} on the hub {1} is loose.",
            "tight": "The nut {0} on the hub {1} is tight.",
            "unlocked": "{0} is unlocked.",
            "on-ground": "Hub {0} is on the ground.",
            "not-on-ground": "Hub {0} is not on the ground.",
            "inflated": "Wheel {0} is inflated.",
            "not-inflated": "Wheel {0} is not inflated.",
            "fastened": "Hub {0} is fastened.",
            "unfastened": "Hub {0} is unfastened.",
            "free": "Hub {0} is free.",
            "on": "{0} is on {1}.",
            "intact": "Wheel {0} is intact.",
        },
        {
            "open": _a("open", "container", "Open a container."),
            "close": _a("close", "container", "Close a container."),
            "fetch": _a("fetch", "object container", "Fetch an object from a container."),
            "put-away": _a("put_away", "object container", "Put away an object in a container."),
            "loosen": _a("loosen", "nut hub", "Loosen the nut on the hub."),
            "tighten": _a("tighten", "nut hub", "Tighten the nut on the hub."),
            "jack-up": _a("jack_up", "hub", "Jack up the hub with the jack."),
            "jack-down": _a("jack_down", "hub", "Lower the hub to the ground and get the jack back."),
            "undo": _a("undo", "nut hub", "Undo the fastening of the nut on the hub."),
            "do-up": _a("do_up", "nut hub", "Do up the nut on the hub."),
            "remove-wheel": _a("remove_wheel", "wheel hub", "Remove the wheel from the hub."),
            "put-on-wheel": _a("put_on_wheel", "wheel hub", "Put the wheel on the hub."),
            "inflate": _a("inflate", "wheel", "Inflate the wheel with the pump."),
        },
    ),
    "gripper": Profile(
        "gripper",
        frozenset({"gripper", "gripper-strips", "gripper-typed"}),
        {
            "room": "{0} is a room.",
            "ball": "{0} is a ball.",
            "gripper": "{0} is a gripper.",
            "at-robby": "Robby is at {0}.",
            "at": "{0} is at {1}.",
            "free": "{0} is free.",
            "carry": "{1} is carrying {0}.",
        },
        {
            "move": _a("move", "room1 room2", "Move the robot from room1 to room2."),
            "pick": _a("pick", "obj room gripper", "Pick up the object in the room with the gripper."),
            "drop": _a("drop", "obj room gripper", "Drop the object carried by the gripper in the room."),
        },
    ),
    "barman": Profile(
        "barman",
        frozenset({"barman"}),
        {
            "ontable": "{0} is on the table.",
            "holding": "{0} is holding {1}.",
            "handempty": "Hand {0} is empty.",
            "empty": "{0} is empty.",
            "contains": "{0} contains {1}.",
            "clean": "{0} is clean.",
            "used": "{0} has been used for {1}.",
            "dispenses": "{0} dispenses {1}.",
            "shaker-empty-level": "{0} is at empty level {1}.",
            "shaker-level": "{0} is at level {1}.",
            "next": "level {0} is next to level {1}.",
            "unshaked": "{0} is unshaked.",
            "shaked": "{0} is shaked.",
            "cocktail-part1": "{0} part1 ingredient is {1}.",
            "cocktail-part2": "{0} part2 ingredient is {1}.",
        },
        {
            "grasp": _a("grasp", "hand container", "Grasp a container from the table."),
            "leave": _a("leave", "hand container", "Leave a container on the table."),
            "fill-shot": _a(
                "fill_shot",
                "shot ingredient hand1 hand2 dispenser",
                "Fill a shot glass held in hand1 with an ingredient from a dispenser.",
            ),
            "refill-shot": _a(
                "refill_shot",
                "shot ingredient hand1 hand2 dispenser",
                "Refill a shot glass with the ingredient it held before, from a dispenser.",
            ),
            "empty-shot": _a("empty_shot", "hand shot beverage", "Empty a shot glass."),
            "clean-shot": _a("clean_shot", "shot beverage hand1 hand2", "Clean a shot glass."),
            "pour-shot-to-clean-shaker": _a(
                "pour_shot_to_clean_shaker",
                "shot ingredient shaker hand1 level1 level2",
                "Pour an ingredient from a shot glass into a clean shaker (level1 to level2).",
            ),
            "pour-shot-to-used-shaker": _a(
                "pour_shot_to_used_shaker",
                "shot ingredient shaker hand1 level1 level2",
                "Pour an ingredient from a shot glass into a used shaker (level1 to level2).",
            ),
            "empty-shaker": _a(
                "empty_shaker",
                "hand shaker cocktail level1 level2",
                "Empty a shaker holding a shaked cocktail (level1 down to its empty level2).",
            ),
            "clean-shaker": _a("clean_shaker", "hand1 hand2 shaker", "Clean an empty shaker."),
            "shake": _a(
                "shake",
                "cocktail ingredient1 ingredient2 shaker hand1 hand2",
                "Shake the two ingredients in the shaker into a cocktail.",
            ),
            "pour-shaker-to-shot": _a(
                "pour_shaker_to_shot",
                "beverage shot hand shaker level1 level2",
                "Pour the beverage from the shaker into a shot glass (level1 down to level2).",
            ),
        },
    ),
}


def _identifier(name: str) -> str:
    ident = re.sub(r"\W", "_", name)
    if not ident or ident[0].isdigit():
        ident = "a_" + ident
    return ident + "_" if keyword.iskeyword(ident) else ident


def _generic_action(schema: Schema) -> ActionText:
    return ActionText(
        _identifier(schema.name),
        tuple(_identifier(p) for p, _ in schema.params),
        f"Perform the PDDL action '{schema.name}'.",
    )


def profile_for(domain: Domain) -> Profile:
    """The known domain's profile when the name, the actions and their arities match, else generic."""
    for profile in PROFILES.values():
        if (
            domain.name in profile.pddl_names
            and set(domain.schemas) == set(profile.actions)
            and all(len(profile.actions[n].params) == len(s.params) for n, s in domain.schemas.items())
        ):
            return profile
    actions = {name: _generic_action(s) for name, s in domain.schemas.items()}
    names = [a.primitive for a in actions.values()]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise PddlError(f"{domain.path}: actions map to the same primitive name(s) {clash}")
    return Profile(domain.name, frozenset({domain.name}), {}, actions)


class Describer:
    """Renders facts, goals and primitive docs of one domain through its profile."""

    def __init__(self, domain: Domain) -> None:
        self.domain = domain
        self.profile = profile_for(domain)
        self.by_primitive = {a.primitive: name for name, a in self.profile.actions.items()}
        self.changing = {atom[0] for s in domain.schemas.values() for atom in (*s.add, *s.delete)}

    def fact(self, atom: Atom) -> str:
        template = self.profile.facts.get(atom[0])
        if template is None:
            return f"{atom[0]}({', '.join(atom[1:])}) holds." if len(atom) > 1 else f"{atom[0]} holds."
        return template.format(*atom[1:])

    def facts(self, atoms: Iterable[Atom]) -> str:
        return " ".join(sorted(self.fact(a) for a in atoms))

    def goal(self, atoms: Iterable[Atom]) -> str:
        conditions = sorted(self.fact(a).rstrip(".") for a in atoms)
        return "The goal is to satisfy the following conditions: " + ", ".join(conditions) + "."

    def clauses(self, atoms: Iterable[Atom]) -> str:
        """Facts as the clauses of one sentence: "you are holding b1; b2 is clear" (mid-sentence, so lower case)."""
        rendered = [self.fact(atom).rstrip(".") for atom in atoms]
        return "; ".join(r[:1].lower() + r[1:] for r in rendered)

    def unmet(self, unmet: Unmet, state: Iterable[Atom]) -> str:
        """Why a call did not apply, in the domain's words, and what holds instead ("Not true now: b4 is on b3.
        True now: b3 is on b4; b4 is on the table."), so that an agent can correct its arguments without
        rereading the whole state. What holds instead: the changing facts that name an object of an unmet atom,
        and those of an unmet atom's predicate when it names at most one object (where the robot is, which
        block is held)."""
        reasons = [f"There is no {name} in this task." for name in unmet.unknown]
        reasons += [f"{name} is not a {typ}." for name, typ in unmet.wrong_type]
        if unmet.atoms:
            reasons.append(f"Not true now: {self.clauses(unmet.atoms)}.")
            named = {arg for atom in unmet.atoms for arg in atom[1:]}
            one_object = {atom[0] for atom in unmet.atoms if len(atom) <= 2}
            instead = sorted(
                atom
                for atom in state
                if atom[0] in self.changing and (atom[0] in one_object or not named.isdisjoint(atom[1:]))
            )
            if instead:
                reasons.append(f"True now: {self.clauses(instead)}.")
        return " ".join(reasons)

    def primitives(self) -> list[PrimitiveSpec]:
        return [self._spec(self.domain.schemas[name], text) for name, text in self.profile.actions.items()]

    def _spec(self, schema: Schema, text: ActionText) -> PrimitiveSpec:
        rename = {"?" + var: param for (var, _), param in zip(schema.params, text.params)}

        def sentence(atoms: tuple[Atom, ...]) -> str:
            return self.clauses(tuple((a[0], *(rename.get(x, x) for x in a[1:])) for a in atoms)) or "none"

        lines = [text.summary]
        if any(typ != ROOT_TYPE for _, typ in schema.params):
            lines.append(
                "Parameters: " + ", ".join(f"{p} (a {typ})" for p, (_, typ) in zip(text.params, schema.params))
            )
        lines.append(f"Preconditions: {sentence(schema.pre)}.")
        lines.append(f"Effects: {sentence(schema.add)}.")
        if schema.delete:
            lines.append(f"No longer true afterwards: {sentence(schema.delete)}.")
        lines.append("If a precondition does not hold, the action takes no effect.")
        return PrimitiveSpec(
            name=text.primitive,
            params=tuple(ParamSpec(name=p, type="str") for p in text.params),
            doc="\n".join(lines),
        )
