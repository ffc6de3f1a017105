"""The run directory contract: config.yaml, last.pt, best.pt, metrics.jsonl, curves.png.

Later stages (eval, predict, export) take a run directory or a checkpoint and read the
architecture from it, so they need no model flags.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from .. import __version__
from ..errors import GSAMError
from ..io import atomic_path, write_text_atomic


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

    def write_config(self, sections: dict[str, Any]) -> None:
        write_text_atomic(self.config, yaml.safe_dump({"gsam_version": __version__, **sections}, sort_keys=False))

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

    def plot_curves(self) -> None:
        rows = self.read_metrics()
        if not rows:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (ax_loss, ax_miou) = plt.subplots(1, 2, figsize=(10, 4))
        ax_loss.plot([r["epoch"] for r in rows], [r["train_loss"] for r in rows], marker="o")
        ax_loss.set(xlabel="epoch", ylabel="training loss", title="Loss")
        val = [r for r in rows if r.get("val_miou") is not None]
        ax_miou.plot([r["epoch"] for r in val], [r["val_miou"] for r in val], marker="o", color="tab:green")
        ax_miou.set(xlabel="epoch", ylabel="mIoU", title="Validation mIoU (native size)", ylim=(0, 1))
        fig.tight_layout()
        with atomic_path(self.curves) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)


def resolve_checkpoint(path: str | Path) -> Path:
    """A run directory means its best.pt (else last.pt); a file is taken as it is."""
    path = Path(path)
    if path.is_dir():
        for candidate in (path / "best.pt", path / "last.pt"):
            if candidate.is_file():
                return candidate
        raise GSAMError(f"{path}: run directory has no best.pt or last.pt (has training finished an epoch?)")
    if not path.exists():
        raise GSAMError(f"{path}: no such run directory or checkpoint")
    return path


def checkpoint_lineage(path: str | Path, payload: dict[str, Any]) -> dict[str, str]:
    """Where a model came from, for the metadata of what is built from it: file, sha256, epoch, val mIoU."""
    from ..io import sha256_file

    lineage = {"source_checkpoint": Path(path).name, "source_sha256": sha256_file(path)}
    if payload.get("epoch") is not None:
        lineage["source_epoch"] = str(payload["epoch"])
    miou = (payload.get("metrics") or {}).get("val_miou")
    if miou is not None:
        lineage["source_val_miou"] = f"{miou:.4f}"
    return lineage
