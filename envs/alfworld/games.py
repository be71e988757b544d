"""Finding ALFWorld games on disk: the ``json_2.1.1/<split>/<task>/<trial>/game.tw-pddl`` layout.

The six task types of the paper are selected by the prefix of the task folder. Like ALFWorld's own
``AlfredTWEnv``, games whose ``solvable`` flag is false and the movable-receptacle and sliced-object
variants are skipped; with the real data this leaves the 134 games of ``valid_unseen``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from learnact.actions.errors import LearnactError
from learnact.actions.files import read_bounded

# Short name (AgentBoard / LearnAct) -> prefix of the task folder.
TASK_PREFIXES: dict[str, str] = {
    "put": "pick_and_place_simple",
    "clean": "pick_clean_then_place_in_recep",
    "heat": "pick_heat_then_place_in_recep",
    "cool": "pick_cool_then_place_in_recep",
    "examine": "look_at_obj_in_light",
    "puttwo": "pick_two_obj_and_place",
}
TASK_TYPES: tuple[str, ...] = tuple(TASK_PREFIXES)
GAME_FILE = "game.tw-pddl"
GAME_KEYS = ("pddl_domain", "grammar", "pddl_problem", "solvable")
_SKIPPED_MARKERS = ("movable", "Sliced")  # not among the six types (AlfredTWEnv skips them too)

MAX_GAME_FILE_BYTES = 64_000_000  # a game.json or traj_data.json (the largest shipped are a few MB)


class AlfworldDataError(LearnactError):
    """Missing or malformed ALFWorld data: the message says what is wrong with which file or folder
    (``path``, when one is at fault), the remedy what to do."""

    def __init__(self, problem: str, remedy: str = "", *, path: Path | None = None) -> None:
        self.path = path
        super().__init__(problem, remedy)


class Game(BaseModel):
    """One playable game: its id ``<split>/<task folder>/<trial folder>``, type and file."""

    model_config = ConfigDict(frozen=True)
    id: str
    type: str
    path: Path


def task_type_of(task_folder: str) -> str | None:
    """The short task type of a task folder name, or None for a folder outside the six types."""
    if any(marker in task_folder for marker in _SKIPPED_MARKERS):
        return None
    prefix = task_folder.split("-", 1)[0]
    return next((short for short, long in TASK_PREFIXES.items() if long == prefix), None)


def check_task_types(task_types: Sequence[str] | None) -> tuple[str, ...]:
    """The selected task types, each once (None: all six).

    :raises AlfworldDataError: for an unknown type or an empty selection.
    """
    if task_types is None:
        return TASK_TYPES
    unknown = [t for t in task_types if t not in TASK_PREFIXES]
    if unknown:
        raise AlfworldDataError(
            f"unknown ALFWorld task type {', '.join(repr(t) for t in unknown)}; known: {', '.join(TASK_TYPES)}"
        )
    if not task_types:
        raise AlfworldDataError(f"no ALFWorld task type selected; choose among {', '.join(TASK_TYPES)}")
    return tuple(dict.fromkeys(task_types))


def split_dir(data_dir: Path, split: str) -> Path:
    """The folder of ``split``; accepts the data folder or its ``json_2.1.1`` subfolder.

    :raises AlfworldDataError: when the folder, its json_2.1.1/ or the split does not exist.
    """
    hint = "give {alfworld_data} or set $ALFWORLD_DATA to the folder that holds json_2.1.1/"
    if not data_dir.is_dir():
        raise AlfworldDataError(f"ALFWorld data folder {data_dir} does not exist", hint, path=data_dir)
    root = data_dir if data_dir.name == "json_2.1.1" else data_dir / "json_2.1.1"
    if not root.is_dir():
        raise AlfworldDataError(
            f"no json_2.1.1/ folder in {data_dir}", hint + " (alfworld-download creates it)", path=data_dir
        )
    folder = root / split
    if not folder.is_dir():
        found = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise AlfworldDataError(
            f"no split '{split}' in {root}; splits found: {', '.join(found) if found else 'none'}",
            "choose one of them as {split}",
            path=root,
        )
    return folder


def read_game_file(path: Path) -> dict[str, object]:
    """The JSON content of a game file, checked for the keys a game needs.

    :raises AlfworldDataError: for a file that cannot be read, is not JSON or lacks a key.
    """
    try:
        data = json.loads(read_bounded(path, MAX_GAME_FILE_BYTES))
    except (OSError, UnicodeDecodeError) as exc:
        raise AlfworldDataError(f"cannot read ALFWorld game file {path}: {exc}", path=path) from exc
    except json.JSONDecodeError as exc:
        raise AlfworldDataError(f"malformed ALFWorld game file {path}: not valid JSON ({exc})", path=path) from exc
    if not isinstance(data, dict):
        raise AlfworldDataError(f"malformed ALFWorld game file {path}: expected a JSON object", path=path)
    missing = [key for key in GAME_KEYS if key not in data]
    if missing:
        raise AlfworldDataError(f"malformed ALFWorld game file {path}: missing key(s) {', '.join(missing)}", path=path)
    if not isinstance(data["solvable"], bool):
        raise AlfworldDataError(f"malformed ALFWorld game file {path}: 'solvable' must be true or false", path=path)
    for key in ("pddl_domain", "grammar", "pddl_problem"):
        if not isinstance(data[key], str) or not data[key].strip():
            raise AlfworldDataError(f"malformed ALFWorld game file {path}: '{key}' must be non-empty text", path=path)
    return data


def discover_games(data_dir: Path, split: str, task_types: Sequence[str]) -> list[Game]:
    """Every solvable game of the selected types in ``split``, sorted by id.

    :raises AlfworldDataError: for a missing folder or split, a malformed game file, or no game at all.
    """
    folder = split_dir(data_dir, split)
    games = []
    for path in sorted(folder.glob(f"*/*/{GAME_FILE}")):
        trial_dir = path.parent
        task_type = task_type_of(trial_dir.parent.name)
        if task_type is None or task_type not in task_types:
            continue
        if not read_game_file(path)["solvable"]:
            continue
        game_id = f"{split}/{trial_dir.parent.name}/{trial_dir.name}"
        games.append(Game(id=game_id, type=task_type, path=path))
    if not games:
        raise AlfworldDataError(
            f"no solvable ALFWorld game of type(s) {', '.join(task_types)} in {folder} "
            f"(expected <task>/<trial>/{GAME_FILE} below it)"
        )
    return games
