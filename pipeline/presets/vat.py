"""VAT (paper Table 1 row "VAT"; docs/original_s4l.md §§4.4 and 5.3).

ImageNet values = config/vat.sh: B = B_u = 256, VAT on labelled and unlabelled images
(apply_vat_to_labeled), eps 40, xi 1e-6, 1 power iteration, vat_weight 0.5, entmin 0,
wd 1e-3, LR 0.03 absolute, schedule 5,140,160,180,200 epochs, eval batch 80.

Small images: the small-image recipe (experiment.for_dataset), B = B_u = 64, eps scaled to
32x32 at the same per-value RMS (40 -> 5.71), the same labelled epochs as supervised.

Run: .venv/bin/python beam_runner.py --preset vat
"""

from __future__ import annotations

from modules.trainer import experiment
from modules.trainer.experiment import Experiment


def get_config(dataset: str = "fashion_mnist", labels: str = "10pct",
               entmin: float = 0.0) -> Experiment:
    exp = experiment.for_dataset(dataset, labels)
    losses = {"supervised": 1.0, "vat": 0.5}
    if entmin:
        losses["entmin"] = entmin
    exp = exp.replace(name="vat_entmin" if entmin else "vat", losses=losses,
                      unsup_batch_mult=1.0, apply_vat_to_labelled=True,
                      vat_eps=experiment.scale_vat_eps(40.0, exp.image_size), vat_xi=1e-6,
                      vat_power_iters=1)
    if dataset == "imagenet":
        exp = exp.replace(weight_decay=1e-3, lr=0.03, lr_scale_batch_size=0,
                          schedule_epochs=(5, 140, 160, 180, 200))
    return experiment.scale_for_dataset(exp)
