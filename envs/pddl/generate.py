"""Seeded generators of the built-in problem sets, sized like the AgentBoard benchmark's.

The generated files are committed under ``problems/<domain>/``; regenerate them with
``python -m learnact.envs.pddl.generate`` (the output is a pure function of the seeds, and a test
checks that the committed files are exactly what this module writes).

Sizes: blockworld 10 problems of 3-7 blocks; gripper 20 problems of 2-12 balls in 2-3 rooms;
tyreworld 10 problems of 1-3 hubs; barman 20 problems of 4-9 shot glasses, 3-8 cocktails,
3 ingredients and 1-3 drinks to serve.

Each domain also has one *demonstration problem*, ``demos/<domain>-demo.pddl``, drawn from its
own seed, different from every task and showing the domain's typical step (:data:`DEMO_SHOWS`): the agents'
and the learner's demonstrations are solved on it, so no evaluated task is ever shown solved in a prompt.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from pathlib import Path

PROBLEMS_DIR = Path(__file__).parent / "problems"
DEMOS_DIR = Path(__file__).parent / "demos"
DEMO_SIZE = {"blockworld": 1, "gripper": 2, "tyreworld": 0, "barman": 0}  # the generator's index: small problems
# Every one-hub tyreworld problem is the same; its demonstration starts with the spare wheel inflated.
DEMO_CHANGE = {"tyreworld": ("(not-inflated r1)", "(inflated r1)")}
SEED = 2024


def _facts(predicate: str, text: str) -> list[tuple[str, str]]:
    """The arguments of every two-argument ``predicate`` fact in ``text``."""
    return re.findall(rf"\({predicate} ([^\s()]+) ([^\s()]+)\)", text)


def _covers_a_goal_block(text: str) -> bool:
    """Blockworld: a block of the goal starts under another one, so the demonstration clears a tower."""
    init, goal = text.split("(:goal", 1)
    covered = {below for _, below in _facts("on", init)}
    return any(covered & set(fact) for fact in _facts("on", goal))


def _carries_both_ways(text: str) -> bool:
    """Gripper: balls go from room to room in at least two directions, one ball each, so the demonstration
    carries each ball on its own and in both directions (the tasks' goals send balls both ways)."""
    init, goal = text.split("(:goal", 1)
    start, target = dict(_facts("at", init)), dict(_facts("at", goal))
    trips = [(start[ball], room) for ball, room in target.items() if start[ball] != room]
    return len(trips) >= 2 and len(set(trips)) == len(trips)


# What a domain's demonstration problem must show, beyond differing from every task: the generator's draws are
# taken in order until one does. A demonstration is the agents' and the learner's only solved example of the
# domain: one that skips the domain's typical step (clearing a tower, carrying a ball back) teaches its absence.
DEMO_SHOWS: dict[str, Callable[[str], bool]] = {"blockworld": _covers_a_goal_block, "gripper": _carries_both_ways}


def _problem(name: str, domain: str, objects: str, init: list[str], goal: list[str]) -> str:
    sep = "\n  " if "\n" in objects else " "
    return (
        f"(define (problem {name})\n(:domain {domain})\n(:objects{sep}{objects})\n"
        "(:init\n" + "\n".join(f"  {f}" for f in init) + ")\n"
        "(:goal (and\n" + "\n".join(f"  {g}" for g in goal) + ")))\n"
    )


def _towers(rng: random.Random, blocks: list[str]) -> list[list[str]]:
    order = blocks[:]
    rng.shuffle(order)
    towers: list[list[str]] = []
    for block in order:
        if towers and rng.random() < 0.6:
            rng.choice(towers).append(block)
        else:
            towers.append([block])
    return towers


def blockworld(index: int, rng: random.Random) -> str:
    blocks = [f"b{i}" for i in range(1, 3 + index // 2 + 1)]
    init_towers = _towers(rng, blocks)
    init = ["(arm-empty)"]
    for tower in init_towers:
        init.append(f"(on-table {tower[0]})")
        init += [f"(on {top} {below})" for below, top in zip(tower, tower[1:])]
        init.append(f"(clear {tower[-1]})")
    while True:
        goal = [f"(on {top} {below})" for t in _towers(rng, blocks) for below, top in zip(t, t[1:])]
        if goal and not set(goal) <= set(init):
            break
    return _problem(f"blockworld-{index + 1:02d}", "blocksworld-4ops", " ".join(blocks), init, sorted(goal))


def gripper(index: int, rng: random.Random) -> str:
    rooms = ["rooma", "roomb", "roomc"][: 2 if index < 15 else 3]
    balls = [f"ball{i}" for i in range(1, 2 + round(index * 10 / 19) + 1)]
    start = {b: rng.choice(rooms) for b in balls}
    while True:
        target = {b: rng.choice(rooms) for b in balls}
        if target != start:
            break
    init = [f"(room {r})" for r in rooms] + [f"(ball {b})" for b in balls]
    init += ["(gripper left)", "(gripper right)", "(free left)", "(free right)"]
    init += [f"(at-robby {rng.choice(rooms)})"] + [f"(at {b} {start[b]})" for b in balls]
    goal = [f"(at {b} {target[b]})" for b in balls]
    objects = " ".join(rooms + balls + ["left", "right"])
    return _problem(f"gripper-{index + 1:02d}", "gripper-strips", objects, init, goal)


def tyreworld(index: int, rng: random.Random) -> str:
    hubs = range(1, (1, 1, 1, 2, 2, 2, 2, 3, 3, 3)[index] + 1)
    init = ["(in jack boot)", "(in pump boot)", "(in wrench boot)", "(unlocked boot)", "(closed boot)"]
    for i in hubs:
        init += [f"(intact r{i})", f"(in r{i} boot)", f"(not-inflated r{i})"]
    for i in hubs:
        init += [
            f"(on w{i} the-hub{i})",
            f"(on-ground the-hub{i})",
            f"(tight nuts{i} the-hub{i})",
            f"(fastened the-hub{i})",
        ]
    replaced = [rng.random() < 0.6 for _ in hubs]
    replaced[rng.randrange(len(replaced))] = True
    goal = []
    for i, replace in zip(hubs, replaced):
        goal += ([f"(on r{i} the-hub{i})"] if replace else []) + [f"(inflated r{i})"]
        goal += [f"(in w{i} boot)"] if replace else []
    objects = "\n  ".join(
        [
            " ".join(f"the-hub{i}" for i in hubs) + " - hub",
            " ".join(f"nuts{i}" for i in hubs) + " - nut",
            "boot - container",
            " ".join(f"r{i} w{i}" for i in hubs) + " - wheel",
        ]
    )
    return _problem(f"tyreworld-{index + 1:02d}", "tyreworld", objects, init, goal)


def barman(index: int, rng: random.Random) -> str:
    shots = [f"shot{i}" for i in range(1, 4 + index * 6 // 20 + 1)]
    cocktails = [f"cocktail{i}" for i in range(1, len(shots))]
    ingredients = ["ingredient1", "ingredient2", "ingredient3"]
    init = ["(ontable shaker1)"] + [f"(ontable {s})" for s in shots]
    init += [f"(dispenses dispenser{i} ingredient{i})" for i in (1, 2, 3)]
    init += ["(clean shaker1)"] + [f"(clean {s})" for s in shots]
    init += ["(empty shaker1)"] + [f"(empty {s})" for s in shots]
    init += [
        "(handempty left)",
        "(handempty right)",
        "(shaker-empty-level shaker1 l0)",
        "(shaker-level shaker1 l0)",
        "(next l0 l1)",
        "(next l1 l2)",
    ]
    for cocktail in cocktails:
        first, second = rng.sample(ingredients, 2)
        init += [f"(cocktail-part1 {cocktail} {first})", f"(cocktail-part2 {cocktail} {second})"]
    served = rng.sample(shots, rng.choice((1, 1, 2, 2, 3)))
    goal = [
        f"(contains {s} {rng.choice(cocktails) if rng.random() < 0.7 else rng.choice(ingredients)})" for s in served
    ]
    objects = "\n  ".join(
        [
            "shaker1 - shaker",
            "left right - hand",
            " ".join(shots) + " - shot",
            " ".join(ingredients) + " - ingredient",
            " ".join(cocktails) + " - cocktail",
            "dispenser1 dispenser2 dispenser3 - dispenser",
            "l0 l1 l2 - level",
        ]
    )
    return _problem(f"barman-{index + 1:02d}", "barman", objects, init, goal)


GENERATORS: dict[str, tuple[Callable[[int, random.Random], str], int]] = {
    "tyreworld": (tyreworld, 10),
    "blockworld": (blockworld, 10),
    "barman": (barman, 20),
    "gripper": (gripper, 20),
}


def generate(domain: str) -> dict[str, str]:
    """File name -> PDDL text of every built-in problem of ``domain``."""
    make, count = GENERATORS[domain]
    rng = random.Random(f"{SEED}-{domain}")
    return {f"{domain}-{i + 1:02d}.pddl": make(i, rng) for i in range(count)}


def demo_problem(domain: str) -> str:
    """The demonstration problem of ``domain``: the generator's problem of size DEMO_SIZE drawn from the seed
    ``<SEED>-<domain>-demo``, redrawn until it differs from every task (its name aside) and shows what
    DEMO_SHOWS asks of the domain.

    :raises ValueError: when 100 draws found none.
    """
    make, _ = GENERATORS[domain]
    index = DEMO_SIZE[domain]
    rng = random.Random(f"{SEED}-{domain}-demo")
    tasks = {text.split("\n", 1)[1] for text in generate(domain).values()}
    shows = DEMO_SHOWS.get(domain)
    for _ in range(100):
        text = make(index, rng).replace(f"(problem {domain}-{index + 1:02d})", f"(problem {domain}-demo)", 1)
        if domain in DEMO_CHANGE:
            text = text.replace(*DEMO_CHANGE[domain])
        if text.split("\n", 1)[1] not in tasks and (shows is None or shows(text)):
            return text
    raise ValueError(
        f"{domain}: none of 100 draws of size {index} was both no task and what DEMO_SHOWS asks; "
        "give DEMO_SIZE another size"
    )


def main() -> None:
    for domain in GENERATORS:
        folder = PROBLEMS_DIR / domain
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in generate(domain).items():
            (folder / name).write_text(text)
        DEMOS_DIR.mkdir(exist_ok=True)
        (DEMOS_DIR / f"{domain}-demo.pddl").write_text(demo_problem(domain))


if __name__ == "__main__":
    main()
