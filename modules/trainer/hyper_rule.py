"""The schedule rule: a run's length from the data it trains on, not from a data set's name.

A preset states its schedule in labelled epochs (the paper's protocol: every method of one
data set trains for the same labelled epochs, docs/original_s4l.md §5.3) and, for data of any
size, bounds on the optimizer steps that gives (`Experiment.min_steps`, `max_steps`). Once
the Trainer knows the labelled split's size (ExampleGen's split statistics), the rule
clips `schedule_epochs[-1] x steps_per_epoch` to those bounds and rescales the whole
schedule (warm-up and decay points keep their fractions) to the whole number of epochs
nearest that step count. So 600 labelled images at batch 64 (9 steps per epoch) train 333
epochs = 2,997 steps, 6,000 images 64 epochs = 5,952 steps, and a folder of 143 labelled
images 1,500 epochs = 3,000 steps. Bounds of 0 leave the schedule as the preset gives it
(ImageNet: the original configs exactly).
"""

from __future__ import annotations

from modules.trainer import schedules
from modules.trainer.experiment import Experiment

# About this many evaluations during a run the rule sizes (for time-to-accuracy plots).
EVALUATIONS_PER_RUN = 8


def applies(exp: Experiment) -> bool:
    return bool(exp.min_steps or exp.max_steps)


def fit_schedule(exp: Experiment) -> Experiment:
    """`exp` with its schedule fitted to `num_labelled_examples` (which must be set)."""
    if not applies(exp):
        return exp
    per_epoch = schedules.steps_per_epoch(exp)
    steps = exp.schedule_epochs[-1] * per_epoch
    if exp.min_steps:
        steps = max(steps, exp.min_steps)
    if exp.max_steps:
        steps = min(steps, exp.max_steps)
    epochs = max(1, round(steps / per_epoch))
    factor = epochs / exp.schedule_epochs[-1]
    schedule = tuple([e * factor for e in exp.schedule_epochs[:-1]] + [float(epochs)])
    changes = {"schedule_epochs": schedule}
    if not exp.eval_every_epochs:
        changes["eval_every_epochs"] = max(1, round(epochs / EVALUATIONS_PER_RUN))
    return exp.replace(**changes)
