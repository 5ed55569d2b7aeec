"""S4L-Rotation (paper Table 1 row "S4L-Rotation"; docs/original_s4l.md §§4.2 and 5.3).

ImageNet values = config/s4l_rotation.sh: B = B_u = 256, wd 1e-3, LR 0.03 absolute
(lr_scale_batch_size 0), schedule 5,140,160,180,200 epochs of the labelled subset, no Polyak
averaging; losses: classification on the 4 rotated copies + 1.0 x rotation (0.5 unlabelled +
0.5 labelled). Eval batch 16 in the original; top-1 is reported on upright images, and the
rotation-averaged accuracy as well.

Small images: the small-image recipe (experiment.for_dataset), B = B_u = 64, the same
labelled epochs (so the same steps) as supervised.

Run: .venv/bin/python beam_runner.py --preset s4l_rotation
"""

from __future__ import annotations

from modules.trainer import experiment
from modules.trainer.experiment import Experiment


def get_config(dataset: str = "fashion_mnist", labels: str = "10pct") -> Experiment:
    exp = experiment.for_dataset(dataset, labels)
    exp = exp.replace(name="s4l_rotation", losses={"supervised": 1.0, "rotation": 1.0},
                      unsup_batch_mult=1.0, eval_rotation_average=True)
    if dataset == "imagenet":
        exp = exp.replace(weight_decay=1e-3, lr=0.03, lr_scale_batch_size=0,
                          schedule_epochs=(5, 140, 160, 180, 200), eval_batch_size=16)
    return experiment.scale_for_dataset(exp)
