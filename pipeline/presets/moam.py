"""MOAM, "Mix Of All Models" (paper section 6; docs/original_s4l.md §§4.5, 4.6, 7.3 and 5.3).

* `moam_step_1` = config/moam_step_1.sh: S4L-Rotation + VAT + EntMin on the 4x wider
  ResNet-50 v2 (ff 16), B = B_u = 128, L = 0.4 L_rot + 0.3 L_cls + 0.3 L_vat + 0.3 L_ent,
  VAT (eps 32) and EntMin on the rotated unlabelled images only, wd 2e-4, LR 0.2 scaled at
  256 (= 0.1), schedule 10,100,150,190,200 epochs, Polyak averaging (evaluated and exported).
* `moam_step_2`: step 1's model pseudo-labels every training image and a new ff-16 network
  trains on them. The original released no config: we use config/pseudo_labels.sh's values
  at step 1's width.
* `moam_step_3`: fine-tunes step 2's weights on the labelled subset. Not in the original at
  all; our choice: LR 0.01 (scaled at 256), wd 1e-4, schedule 1,20,25,28,30 labelled epochs.

Small images: the small-image recipe (experiment.for_dataset) and the same backbone as every
other method (the CPU table compares methods at one width); step 1: B = B_u = 64, the same
labelled epochs as every single-network method, the EMA with its half-life in steps; step 3:
a fine-tune of 30 labelled epochs at a tenth of the recipe's LR (cosine, no step bounds).

FixMatch variant (`moam_fixmatch_step_1/2/3`; not in the paper): step 1 is rotation +
FixMatch-style consistency in place of VAT + EntMin, L = 0.4 L_rot + 0.3 L_cls + 0.3 L_fm (the
supervised and consistency terms weighted 1:1, as in the fixmatch preset), the fixmatch
preset's threshold, strong ops and Cutout, mu = 1 (not the fixmatch preset's 2); both views of
every unlabelled image are turned 4 ways. Steps 2 and 3 are MOAM's, on step 1's model, except
that on small images step 2 labels each image by the logits averaged over the views step 1's
classifier trained on (88.18 % against 87.62 % upright on the 1 % validation cell,
benchmarks/results/ablation_pseudo_label_views.md). Its loss weights were not tuned.

Labelled views on small images: the recipe's strong ones in the FixMatch variant; MOAM keeps
the weak ones (pad-and-crop + flip) in all three steps, for step 1's EntMin (see the
vat_entmin preset) and so that its steps 2-3 stay the chain the grid measured.

Run: .venv/bin/python beam_runner.py --preset moam_step_3   (runs steps 1, 2 and 3)
     .venv/bin/python beam_runner.py --preset moam_fixmatch_step_3
"""

from __future__ import annotations

from modules.trainer import experiment
from modules.trainer.experiment import Experiment
from pipeline.presets import fixmatch, pseudo_labels

# The families of three steps, by the prefix of their stage names: step 1's consistency.
FAMILIES = ("moam", "moam_fixmatch")


def _width(dataset: str) -> int:
    return 16 if dataset == "imagenet" else experiment.for_dataset(dataset).filters_factor


def step_1(dataset: str = "fashion_mnist", labels: str = "10pct",
           family: str = "moam") -> Experiment:
    exp = experiment.for_dataset(dataset, labels)
    exp = exp.replace(
        name=f"{family}_step_1",
        losses={"rotation": 0.4, "supervised": 0.3, "vat": 0.3, "entmin": 0.3},
        unsup_batch_mult=1.0, filters_factor=_width(dataset),
        apply_vat_to_labelled=False, vat_eps=experiment.scale_vat_eps(32.0, exp.image_size),
        vat_xi=1e-6, vat_power_iters=1, polyak_averaging=True, eval_rotation_average=True)
    if family == "moam_fixmatch":
        consistency = fixmatch.get_config(dataset, labels)
        exp = exp.replace(losses={"rotation": 0.4, "supervised": 0.3, "fixmatch": 0.3},
                          fixmatch_threshold=consistency.fixmatch_threshold,
                          strong_ops=consistency.strong_ops,
                          cutout_size=consistency.cutout_size)
    elif family == "moam":
        exp = exp.replace(labelled_augment="weak")
    else:
        raise ValueError(f"unknown MOAM family {family!r}; known: {FAMILIES}")
    if dataset == "imagenet":
        exp = exp.replace(batch_size=128, checkpoint_every_epochs=10, weight_decay=2e-4,
                          lr=0.2, lr_scale_batch_size=256,
                          schedule_epochs=(10, 100, 150, 190, 200))
    return experiment.scale_for_dataset(exp)


def _views_of_step_1(dataset: str, labels: str, family: str) -> dict:
    """Steps 2 and 3 train on the labelled views that their family's step 1 trained on."""
    return {"labelled_augment": step_1(dataset, labels, family).labelled_augment}


def step_2(dataset: str = "fashion_mnist", labels: str = "10pct",
           family: str = "moam") -> Experiment:
    exp = pseudo_labels.get_config(dataset, labels, name=f"{family}_step_2",
                                   labeller=f"{family}_step_1")
    exp = exp.replace(filters_factor=_width(dataset), **_views_of_step_1(dataset, labels, family))
    if family == "moam_fixmatch" and dataset != "imagenet":
        exp = exp.replace(pseudo_label_views="averaged")
    return exp


def step_3(dataset: str = "fashion_mnist", labels: str = "10pct",
           family: str = "moam") -> Experiment:
    exp = experiment.for_dataset(dataset, labels)
    exp = exp.replace(name=f"{family}_step_3", losses={"supervised": 1.0},
                      unsup_batch_mult=0.0, filters_factor=_width(dataset),
                      init_from=f"{family}_step_2", **_views_of_step_1(dataset, labels, family))
    if dataset == "imagenet":
        exp = exp.replace(weight_decay=1e-4, lr=0.01, lr_scale_batch_size=256,
                          schedule_epochs=(1, 20, 25, 28, 30))
    else:
        exp = exp.replace(lr=exp.lr / 10, schedule_epochs=(1, 30), min_steps=0, max_steps=0)
    return experiment.scale_for_dataset(exp)
