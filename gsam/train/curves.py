"""curves.png of a run: training loss and validation mIoU per epoch, from metrics.jsonl."""

from __future__ import annotations

from ..io import atomic_path
from ..model.run import RunDir


def plot_curves(run: RunDir) -> None:
    rows = run.read_metrics()
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
    with atomic_path(run.curves) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
