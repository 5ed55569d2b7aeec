"""S4L-Rotation (paper Table 1 row "S4L-Rotation"; S4L_SPEC sections 4.2 and 5.3).

ImageNet values = config/s4l_rotation.sh: B = B_u = 256, wd 1e-3, LR 0.03 absolute
(lr_scale_batch_size 0), schedule 5,140,160,180,200 epochs of the labelled subset, no Polyak
averaging; losses: classification on the 4 rotated copies + 1.0 x rotation (0.5 unlabelled +
0.5 labelled). Eval batch 16 in the original; top-1 is reported on upright images, and the
rotation-averaged accuracy as well.

Fashion-MNIST: B = B_u = 64, the budget rule for the epochs (experiment.scale_for_dataset).

Run: .venv/bin/python beam_runner.py --preset s4l_rotation
"""

from __future__ import annotations

from modules.trainer import experiment
from modules.trainer.experiment import Experiment


def get_config(dataset: str = "fashion_mnist", labels: str = "10pct") -> Experiment:
    exp = experiment.for_dataset(dataset, labels)
    exp = exp.replace(name="s4l_rotation", losses={"supervised": 1.0, "rotation": 1.0},
                      unsup_batch_mult=1.0, weight_decay=1e-3, lr=0.03, lr_scale_batch_size=0,
                      schedule_epochs=(5, 140, 160, 180, 200), eval_rotation_average=True)
    if dataset == "imagenet":
        exp = exp.replace(eval_batch_size=16)
    elif dataset == "fashion_mnist":
        exp = exp.replace(batch_size=64)  # 4 x (64 + 64) = 512 images per step
    return experiment.scale_for_dataset(exp)
