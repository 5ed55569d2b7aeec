"""FixMatch-style consistency (Sohn et al. 2020; not in the S4L paper or its code).

Supervised cross-entropy on the labelled batch plus, on each unlabelled image, cross-entropy
of a strong view (RandAugment-style ops + Cutout) toward the weak view's prediction where
that prediction is confident (>= 0.95): `modules/trainer/loss_fixmatch.py`.

Small images: the small-image recipe (experiment.for_dataset), B = 64 and B_u = mu x B with
mu = 2 (FixMatch used 7; each unlabelled image costs two forward passes; on the 1 % validation
cell with strong labelled views mu = 2 scored 88.76 % against 88.34 % for mu = 1 and 88.46 %
for mu = 3, benchmarks/results/ablation_fixmatch_mu.md), the same labelled epochs as every
other method.
ImageNet: FixMatch's ImageNet choices on the S4L supervised 10 % schedule: mu = 5,
threshold 0.7, weight decay 3e-4.

Run: .venv/bin/python beam_runner.py --preset fixmatch
"""

from __future__ import annotations

from modules.trainer import experiment
from modules.trainer.experiment import Experiment


def get_config(dataset: str = "fashion_mnist", labels: str = "10pct") -> Experiment:
    exp = experiment.for_dataset(dataset, labels)
    exp = exp.replace(name="fixmatch", losses={"supervised": 1.0, "fixmatch": 1.0},
                      unsup_batch_mult=2.0, fixmatch_threshold=0.95, strong_ops=2,
                      cutout_size=exp.image_size // 2)
    if dataset == "imagenet":
        exp = exp.replace(unsup_batch_mult=5.0, fixmatch_threshold=0.7, weight_decay=3e-4,
                          lr=0.1, lr_scale_batch_size=256,
                          schedule_epochs=(5, 140, 160, 180, 200))
    return experiment.scale_for_dataset(exp)
