"""Supervised baseline (paper Table 1 row "Supervised"; docs/original_s4l.md §§4.1 and 5.3).

ImageNet values = config/supervised_imagenet_10p.sh and supervised_imagenet_1p.sh:
10 %: B=256, wd 1e-3, LR 0.1 (scaled at 256), schedule 5,140,160,180,200 epochs;
1 %: wd 1e-2, LR 0.01, schedule 5,700,800,900,1000, plus hsvnoise and a cached labelled set.
No unlabelled stream (the original's dummy one is dropped, spec section 1.5).

Small images (Fashion-MNIST, image folders): the small-image recipe of
`experiment.for_dataset` as it is, at both label budgets.

Run: ./setup.sh && .venv/bin/python beam_runner.py --preset supervised
"""

from __future__ import annotations

from modules.trainer import experiment
from modules.trainer.experiment import Experiment


def get_config(dataset: str = "fashion_mnist", labels: str = "10pct") -> Experiment:
    exp = experiment.for_dataset(dataset, labels)
    exp = exp.replace(name="supervised", losses={"supervised": 1.0}, unsup_batch_mult=0.0)
    if dataset != "imagenet":
        return experiment.scale_for_dataset(exp)
    exp = exp.replace(lr_scale_batch_size=256)
    if labels == "1pct":
        exp = exp.replace(weight_decay=1e-2, lr=0.01,
                          schedule_epochs=(5, 700, 800, 900, 1000), hsvnoise=True,
                          cache_labelled=True)
    else:
        exp = exp.replace(weight_decay=1e-3, lr=0.1, schedule_epochs=(5, 140, 160, 180, 200))
    return experiment.scale_for_dataset(exp)
