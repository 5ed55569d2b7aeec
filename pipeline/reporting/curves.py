"""A stage's training curves (losses, top-1, learning rate per round) as a PNG, from the
run record the Trainer writes beside its TensorBoard logs."""

from __future__ import annotations

import io
import json
import os
from typing import Any

from modules import features


def load_run_record(logdir: str | None) -> dict[str, Any] | None:
    """The Trainer's run record in `logdir`, or None where there is none."""
    path = os.path.join(logdir or "", features.RUN_RECORD_FILE)
    if not logdir or not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def eval_rounds(record: dict[str, Any], evaluations: int, rounds: int) -> list[int]:
    """The rounds (1-based) after which the evaluations during training ran."""
    # Keras evaluates after every k-th round; records written before k was recorded give
    # `evaluations` = rounds // k, from which k = rounds // evaluations (while k <= that count).
    every = record.get("eval_every_rounds") or max(1, rounds // max(1, evaluations))
    return [every * (i + 1) for i in range(evaluations)]


def curves_png(record: dict[str, Any]) -> bytes | None:
    """Three panels: the loss terms, train and eval top-1, and the learning rate, per round;
    None where the record has no per-round history."""
    train = record.get("train_history") or {}
    rounds = len(train.get("total_loss") or [])
    if not rounds:
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    x = list(range(1, rounds + 1))
    fig, (losses, accuracy, lr) = plt.subplots(1, 3, figsize=(11, 3.2), dpi=110)
    for name in sorted(k for k in train if k.endswith("_loss")):
        losses.plot(x, train[name], label=name.removesuffix("_loss"))
    losses.set_title("training losses")
    losses.legend(fontsize=7)
    if train.get("top1"):
        accuracy.plot(x, [100 * v for v in train["top1"]], label="train (labelled batches)")
    evaluated = (record.get("eval_history") or {}).get("val_top1") or []
    if evaluated:
        accuracy.plot(eval_rounds(record, len(evaluated), rounds),
                      [100 * v for v in evaluated], marker="o", label="eval")
    accuracy.set_title("top-1 (%)")
    accuracy.legend(fontsize=7)
    if train.get("lr"):
        lr.plot(x, train["lr"])
    lr.set_title("learning rate (end of round)")
    for axis in (losses, accuracy, lr):
        axis.set_xlabel("round")
        axis.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()
