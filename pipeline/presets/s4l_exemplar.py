"""S4L-Exemplar (paper Table 1 row "S4L-Exemplar"; S4L_SPEC sections 4.3 and 5.3).

ImageNet values = config/s4l_exemplar.sh: B = B_u = 512, 8 inception patches per image with
hsvnoise and flip, embedding head 1000, triplet weight 1.0 (0.5 unlabelled + 0.5 labelled),
wd 1e-3, LR 0.1 absolute (lr_scale_batch_size 0), schedule 10,140,160,180,200 epochs, eval
batch 40. Identities are the source images (the original's swapped-argument bug fixed; set
exemplar_identity=original_swapped to reproduce it).

Fashion-MNIST: B = B_u = 32 (8 x 64 = 512 patches per step), the budget rule for the epochs;
the inception crop (area 25-100 %) that the other Fashion-MNIST presets drop.

Run: .venv/bin/python beam_runner.py --preset s4l_exemplar
"""

from __future__ import annotations

from modules.trainer import experiment
from modules.trainer.experiment import Experiment


def get_config(dataset: str = "fashion_mnist", labels: str = "10pct") -> Experiment:
    exp = experiment.for_dataset(dataset, labels)
    exp = exp.replace(name="s4l_exemplar", losses={"supervised": 1.0, "exemplar": 1.0},
                      unsup_batch_mult=1.0, exemplar_patches=8, triplet_embed_dim=1000,
                      exemplar_identity="source_image", hsvnoise=True, weight_decay=1e-3,
                      lr=0.1, lr_scale_batch_size=0, schedule_epochs=(10, 140, 160, 180, 200))
    if dataset == "imagenet":
        exp = exp.replace(batch_size=512, eval_batch_size=40)
    elif dataset == "fashion_mnist":
        # The base drops the crop on Fashion-MNIST; Exemplar needs it: without it the P
        # patches of an image would differ only by a flip and hsvnoise, whose hue shift does
        # nothing to the grey garments (it leaves a tint of at most 0.1 saturation).
        exp = exp.replace(batch_size=32, triplet_embed_dim=128, inception_crop=True)
    return experiment.scale_for_dataset(exp)
