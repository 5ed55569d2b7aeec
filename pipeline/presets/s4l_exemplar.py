"""S4L-Exemplar (paper Table 1 row "S4L-Exemplar"; docs/original_s4l.md §§4.3 and 5.3).

ImageNet values = config/s4l_exemplar.sh: B = B_u = 512, 8 inception patches per image with
hsvnoise and flip, embedding head 1000, triplet weight 1.0 (0.5 unlabelled + 0.5 labelled),
wd 1e-3, LR 0.1 absolute (lr_scale_batch_size 0), schedule 10,140,160,180,200 epochs, eval
batch 40. Identities are the source images (the original's swapped-argument bug fixed; set
exemplar_identity=original_swapped to reproduce it). Negatives are mined within groups of 16
images, as each core of the original's v3-32 did, whatever the topology this runs on.

Small images: the small-image recipe (experiment.for_dataset) with B = B_u = 64, 4 patches
per image (4 x 128 = 512 patches per step), embedding width 128, and the inception crop
(area 25-100 % of the padded canvas, resized back) that the other small-image presets drop;
weak labelled views, since its patches are its views.

Run: .venv/bin/python beam_runner.py --preset s4l_exemplar
"""

from __future__ import annotations

from modules.trainer import experiment
from modules.trainer.experiment import Experiment


def get_config(dataset: str = "fashion_mnist", labels: str = "10pct") -> Experiment:
    exp = experiment.for_dataset(dataset, labels)
    exp = exp.replace(name="s4l_exemplar", losses={"supervised": 1.0, "exemplar": 1.0},
                      unsup_batch_mult=1.0, exemplar_patches=8, triplet_embed_dim=1000,
                      exemplar_identity="source_image", hsvnoise=True)
    if dataset == "imagenet":
        exp = exp.replace(batch_size=512, eval_batch_size=40, weight_decay=1e-3, lr=0.1,
                          lr_scale_batch_size=0, schedule_epochs=(10, 140, 160, 180, 200),
                          exemplar_mining_images=16)
    else:
        # The small-image recipe drops the crop; Exemplar needs it: without it the P
        # patches of an image would differ only by a shift, a flip and hsvnoise, whose hue
        # shift does nothing to grey garments.
        exp = exp.replace(exemplar_patches=4, triplet_embed_dim=128, inception_crop=True,
                          labelled_augment="weak")
    return experiment.scale_for_dataset(exp)
