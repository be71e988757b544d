"""The run directory: plain files a researcher can open, written so that a killed run loses nothing.

``config.json`` and ``summary.json`` are replaced atomically (write to a temporary file, fsync, rename);
``episodes.jsonl`` is append-only, one finished episode per line, flushed and fsynced after each line, so a
run killed at any moment leaves at most a torn last line, which is ignored on resume.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from pathlib import Path

from pydantic import BaseModel, ValidationError

from learnact.engine.records import EpisodeRecord

CONFIG = "config.json"
EPISODES = "episodes.jsonl"
SUMMARY = "summary.json"


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


class RunDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def claim(self, config: BaseModel, same_run_fields: tuple[str, ...]) -> None:
        """Write the config; refuse a folder that holds a different run (it would mix results)."""
        config_path = self.path / CONFIG
        if config_path.exists():
            try:
                previous = json.loads(config_path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{config_path} is not valid JSON ({exc}); use another --out") from exc
            current = config.model_dump(mode="json")
            differing = [f for f in same_run_fields if previous.get(f) != current.get(f)]
            if differing:
                raise ValueError(
                    f"{self.path} holds a run with a different {', '.join(differing)}; "
                    "use another --out or the same settings to resume it"
                )
        write_atomic(config_path, config.model_dump_json(indent=2) + "\n")

    def finished(self) -> list[EpisodeRecord]:
        """Episodes already recorded. A torn last line (a killed write) is cut off."""
        path = self.path / EPISODES
        if not path.exists():
            return []
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            with path.open("r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)
        records = []
        with path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                try:
                    records.append(EpisodeRecord.model_validate_json(line))
                except ValidationError as exc:
                    raise ValueError(
                        f"{path}:{number} is not an episode record ({exc.errors()[0]['msg']}); "
                        "remove that line to resume, or use another --out"
                    ) from exc
        return records

    def append(self, record: EpisodeRecord) -> None:
        line = record.model_dump_json() + "\n"
        with self._lock:
            with (self.path / EPISODES).open("a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())

    def write_summary(self, summary: BaseModel) -> None:
        write_atomic(self.path / SUMMARY, summary.model_dump_json(indent=2) + "\n")
