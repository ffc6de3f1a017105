"""TUNE_DIR/measurements.jsonl: every measured candidate, one JSON line each, written as soon as it is
measured, so an interrupted tune resumes without measuring anything twice. A line counts only for the same
settings (workload, model, loads, SLO, stopping rule): other settings would have measured differently."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def settings_key(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


class Journal:
    def __init__(self, path: Path, settings: dict) -> None:
        self.path, self.settings = path, settings
        self.key = settings_key(settings)

    def load(self) -> dict[str, dict]:
        """Measurements of these settings, by candidate key (the last line of a key wins); a torn last line
        (the tune was killed while writing it) is skipped."""
        found: dict[str, dict] = {}
        if not self.path.is_file():
            return found
        for line in self.path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if record.get("settings_key") == self.key:
                found[record["measurement"]["key"]] = record["measurement"]
        return found

    def append(self, measurement: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"settings_key": self.key, "settings": self.settings, "measurement": measurement})
        torn = self.path.is_file() and self.path.stat().st_size and not self.path.read_bytes().endswith(b"\n")
        with self.path.open("a") as f:
            f.write(("\n" if torn else "") + line + "\n")
            f.flush()
            os.fsync(f.fileno())
