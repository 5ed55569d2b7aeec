"""Pseudo-labels (paper Table 1 row "Pseudo-labels"; docs/original_s4l.md §§7.1, 7.2 and 5.3).

Two stages in one pipeline: the `supervised` preset's model labels every training image
(BulkInferrer, eval preprocessing = the original's centre crop, upright), then this model
trains on all training images with the true label where the image is in the labelled subset
and the pseudo-label elsewhere. ImageNet values = config/pseudo_labels.sh: B = 256, no
unlabelled stream, ff 4, wd 1e-4, LR 0.1 (scaled at 256), schedule 5,30,60,90,100 epochs of
all 1,281,167 training images, checkpoints every 25k steps.

Small images: the small-image recipe (experiment.for_dataset); its labelled epochs are
passes over all training images, so the schedule rule's upper bound sets its length.

`fixmatch_pseudo_labels` (not in the paper): the same student on the `fixmatch` preset's
pseudo-labels, averaged over the views its classifier trained on (both mirror images): MOAM's
step 2 on a FixMatch-style model instead of MOAM step 1's (docs/results.md, "Pseudo-labels
from the FixMatch model").

`fixmatch_pseudo_labels_round_2` (not in the paper): a second round, the same student again on
`fixmatch_pseudo_labels`' averaged pseudo-labels (docs/results.md, "A second round of
pseudo-labels").

Run: .venv/bin/python beam_runner.py --preset pseudo_labels
     .venv/bin/python beam_runner.py --preset fixmatch_pseudo_labels   (fixmatch, then this)
     .venv/bin/python beam_runner.py --preset fixmatch_pseudo_labels_round_2   (three networks)
"""

from __future__ import annotations

from modules.trainer import experiment
from modules.trainer.experiment import Experiment


def get_config(dataset: str = "fashion_mnist", labels: str = "10pct",
               name: str = "pseudo_labels", labeller: str = "supervised") -> Experiment:
    exp = experiment.for_dataset(dataset, labels)
    exp = exp.replace(name=name, losses={"supervised": 1.0}, unsup_batch_mult=0.0,
                      pseudo_labels_from=labeller, cache_labelled=False)
    if dataset == "imagenet":
        exp = exp.replace(num_labelled_examples=1_281_167, checkpoint_every_epochs=5,
                          weight_decay=1e-4, lr=0.1, lr_scale_batch_size=256,
                          schedule_epochs=(5, 30, 60, 90, 100))
    return experiment.scale_for_dataset(exp)


def from_fixmatch(dataset: str = "fashion_mnist", labels: str = "10pct") -> Experiment:
    """The pseudo-labels student of the `fixmatch` preset's model (averaged views)."""
    exp = get_config(dataset, labels, name="fixmatch_pseudo_labels", labeller="fixmatch")
    return exp.replace(pseudo_label_views="averaged")


def second_round(dataset: str = "fashion_mnist", labels: str = "10pct") -> Experiment:
    """The `fixmatch_pseudo_labels` student again, on that stage's own pseudo-labels."""
    return from_fixmatch(dataset, labels).replace(name="fixmatch_pseudo_labels_round_2",
                                                  pseudo_labels_from="fixmatch_pseudo_labels")
