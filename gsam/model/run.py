"""A trained model on disk: a run directory (config.yaml, last.pt, best.pt, metrics.jsonl) or one .pt.

Training (and `gsam import-reference`) writes run directories; every later stage reads them
through this module: `load_trained` for the model and its facts, `trained_facts` for the facts
alone (no model built), `RunDir(path).data_folder()` for the dataset it trained on. So eval,
predict, export and deploy take a run and need no architecture flags.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .. import __version__
from ..artifacts import wrong_artifact
from ..errors import GSAMError
from ..io import sha256_file, write_text_atomic
from .config import GSAMConfig
from .facts import ModelFacts

if TYPE_CHECKING:
    from .gsam import GSAM


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    config = property(lambda self: self.path / "config.yaml")
    last = property(lambda self: self.path / "last.pt")
    best = property(lambda self: self.path / "best.pt")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    curves = property(lambda self: self.path / "curves.png")

    def prepare(self, resume: bool) -> None:
        """Refuse to overwrite an earlier run unless resuming it."""
        if not resume and self.last.exists():
            raise GSAMError(f"{self.path}: already holds a run (last.pt); use --resume {self.path} to continue "
                            "it or choose another --out")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            for stale in self.path.glob(".*.tmp"):  # left by a process killed mid-write
                stale.unlink()
            probe = self.path / ".write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise GSAMError(f"{self.path}: cannot write the run directory ({exc.strerror or exc})") from None

    def write_config(self, sections: dict[str, Any], path: Path | None = None) -> None:
        """config.yaml: the sections (model, classes, train or source) and the gsam version."""
        text = yaml.safe_dump({"gsam_version": __version__, **sections}, sort_keys=False)
        write_text_atomic(path or self.config, text)

    def read_config(self) -> dict[str, Any]:
        """config.yaml's sections; a one-line error naming the file when it is missing or not a mapping."""
        try:
            data = yaml.safe_load(self.config.read_text())
        except FileNotFoundError:
            raise GSAMError(f"{self.config}: no such run config (is {self.path} a run directory?)") from None
        except yaml.YAMLError as exc:
            raise GSAMError(f"{self.config}: not valid YAML ({str(exc).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise GSAMError(f"{self.config}: expected a mapping of sections (model, classes, train)")
        return data

    def train_settings(self) -> dict[str, Any]:
        """The `train` section: the settings `--resume` continues with."""
        section = self.read_config().get("train")
        if not isinstance(section, dict):
            raise GSAMError(f"{self.config}: field 'train' is missing (not a run written by gsam train)")
        return section

    def data_folder(self) -> Path | None:
        """The dataset the run trained on (`train.data` in config.yaml), when it is still there."""
        if not self.config.is_file():
            return None
        data = (self.read_config().get("train") or {}).get("data")
        return Path(data) if data and Path(data).is_dir() else None

    def checkpoint(self) -> Path:
        """best.pt, else last.pt."""
        for candidate in (self.best, self.last):
            if candidate.is_file():
                return candidate
        other = wrong_artifact(self.path, "a run directory (config.yaml, best.pt, last.pt)")
        raise GSAMError(other or f"{self.path}: run directory has no best.pt or last.pt (has training finished an epoch?)")

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics.exists():
            return []
        rows = []
        for line in self.metrics.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut by a crash: everything after it is untrusted
        return rows

    def append_metrics(self, row: dict[str, Any]) -> None:
        with self.metrics.open("a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()

    def truncate_metrics(self, last_epoch: int) -> None:
        """On resume, keep only the epochs the checkpoint has seen."""
        rows = [r for r in self.read_metrics() if r.get("epoch", 0) <= last_epoch]
        write_text_atomic(self.metrics, "".join(json.dumps(r) + "\n" for r in rows))


def resolve_checkpoint(path: str | Path) -> Path:
    """A run directory means its best.pt (else last.pt); a file is taken as it is."""
    path = Path(path)
    if path.is_dir():
        return RunDir(path).checkpoint()
    if not path.exists():
        raise GSAMError(f"{path}: no such run directory or checkpoint")
    return path


def checkpoint_lineage(path: str | Path, payload: dict[str, Any]) -> dict[str, str]:
    """Where a model came from, for the metadata of what is built from it: file, sha256, epoch, val mIoU."""
    lineage = {"source_checkpoint": Path(path).name, "source_sha256": sha256_file(path)}
    if payload.get("epoch") is not None:
        lineage["source_epoch"] = str(payload["epoch"])
    miou = (payload.get("metrics") or {}).get("val_miou")
    if miou is not None:
        lineage["source_val_miou"] = f"{miou:.4f}"
    return lineage


def payload_facts(checkpoint: Path, payload: dict[str, Any]) -> ModelFacts:
    """The one way from a gsam checkpoint's payload to its facts: config, palette, lineage."""
    from .checkpoint import CheckpointError

    try:
        config = GSAMConfig.from_dict(payload["config"])
        palette = tuple(tuple(int(v) for v in c) for c in (payload.get("classes") or {}).get("palette", ()))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{checkpoint}: damaged gsam checkpoint ({str(exc).splitlines()[0][:160]})") from None
    return ModelFacts(config, palette, gsam_version=__version__, lineage=checkpoint_lineage(checkpoint, payload))


def trained_facts(source: str | Path) -> tuple[Path, dict[str, Any], ModelFacts]:
    """(checkpoint, payload, facts) of a run directory or .pt, without building the model."""
    from .checkpoint import read_gsam_checkpoint

    checkpoint = resolve_checkpoint(source)
    payload = read_gsam_checkpoint(checkpoint)
    return checkpoint, payload, payload_facts(checkpoint, payload)


def load_trained(source: str | Path) -> tuple["GSAM", ModelFacts]:
    """The model of a run directory or .pt (in eval mode) and its facts."""
    from .checkpoint import load_gsam_checkpoint

    checkpoint = resolve_checkpoint(source)
    model, payload = load_gsam_checkpoint(checkpoint)
    return model, payload_facts(checkpoint, payload)
