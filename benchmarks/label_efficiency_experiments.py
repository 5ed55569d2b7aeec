"""What experiment a cell of the label-efficiency grid runs, and whether a recorded result
still is that experiment (a preset changed since makes its old results stale)."""

from __future__ import annotations

import json

FRACTION = {"1pct": 0.01, "10pct": 0.1}


def cell_flags(preset: str, labels: str, seed: int, overrides: tuple[str, ...] = ()
               ) -> list[str]:
    """The command-line flags that define the experiment of one cell (`overrides`: a
    variant's `--set [STAGE.]FIELD=VALUE` items, those the preset takes)."""
    flags = ["--preset", preset, "--labelled_fraction", str(FRACTION[labels]),
             "--labels", labels, "--seed", str(seed)]
    for item in overrides_for(preset, overrides):
        flags += ["--set", item]
    return flags


def overrides_for(preset: str, overrides: tuple[str, ...]) -> tuple[str, ...]:
    """A variant's overrides that apply to `preset`: every stage's, and those of a stage the
    preset trains (`moam_step_2.pseudo_label_views=...` leaves `vat` as it is)."""
    from pipeline import presets

    names = {stage.name for stage in presets.stages(preset)}
    return tuple(item for item in overrides
                 if item.split("=", 1)[0].rpartition(".")[0] in names | {""})


def expected_experiments(preset: str, labels: str, seed: int,
                         overrides: tuple[str, ...] = ()) -> dict[str, dict]:
    """Every stage's experiment that a run of the cell would use now, by stage name."""
    from pipeline import cli, presets

    if preset not in presets.PRESETS:  # checked here: argparse would exit instead
        raise ValueError(f"unknown preset {preset!r}")
    args = cli.build_parser().parse_args(cell_flags(preset, labels, seed, overrides))
    return {exp.name: json.loads(json.dumps(exp.to_dict()))
            for exp in cli.make_experiments(args, num_classes=10)}


def rejection(preset: str, overrides: tuple[str, ...]) -> str:
    """Why `preset` cannot run with a variant's overrides ("" when it can): the experiment
    check's message (`labelled_augment=strong` for S4L-Exemplar, whose patches are its views)."""
    from modules.trainer import experiment
    from pipeline import presets

    try:
        presets.check_stages([experiment.Experiment.from_dict(fields) for fields in
                              expected_experiments(preset, "1pct", 0, overrides).values()])
    except ValueError as e:
        return str(e)
    return ""


def expected_experiment(preset: str, labels: str, seed: int,
                        overrides: tuple[str, ...] = ()) -> dict:
    """The final stage's experiment that a run of the cell would use now."""
    return list(expected_experiments(preset, labels, seed, overrides).values())[-1]


# Fields that do not change the trained model, and fields that only some methods read.
_EVAL_ONLY = {"eval_every_epochs", "eval_rotation_average", "eval_batch_size",
              "checkpoint_every_epochs", "resume_from"}
_METHOD_FIELDS = {"vat": ("vat_", "apply_vat"), "exemplar": ("exemplar_", "triplet_")}
# What runs recorded before a field existed did instead: a record that lacks the field is
# compared with this value (a field not named here counts as changed where it is read).
_BEFORE_FIELD = {"kernel_init": "glorot_uniform", "vat_exact_eps": False,
                 "exemplar_mining_images": 0, "rotation_classify_turns": True,
                 "exemplar_classify_crops": True, "pseudo_label_views": "upright",
                 "labelled_augment": "weak"}


def _changed(now: dict, then: dict, ignore: set[str]) -> list[str]:
    unused = tuple(prefix for method, prefixes in _METHOD_FIELDS.items()
                   if method not in now["losses"] for prefix in prefixes)
    return sorted(k for k in set(now) | set(then)
                  if now.get(k) != then.get(k, _BEFORE_FIELD.get(k))
                  and k not in _EVAL_ONLY | ignore
                  and not k.startswith(unused))


def stale_fields(result: dict) -> list[str]:
    """Fields of the recorded run's experiment that the preset now sets differently (a field
    the record lacks counts, unless the method does not read it), then those of the stages it
    builds on, as "stage.field" (a changed MOAM step 1 makes steps 2 and 3 stale too)."""
    now = expected_experiments(result["preset"], result["labels"], result["seed"],
                               tuple(result.get("overrides", ())))
    changed = _changed(list(now.values())[-1], result.get("experiment", {}), set())
    for row in result.get("stages", [])[:-1]:
        if not row.get("experiment"):  # results written before stages recorded theirs
            continue
        if row["method"] not in now:
            changed.append(f"{row['method']} (no longer a stage)")
            continue
        # The Trainer's record holds the labelled count read from the data, the preset 0.
        changed += [f"{row['method']}.{k}" for k in _changed(
            as_trained(now[row["method"]], row["experiment"]), row["experiment"],
            {"num_labelled_examples"})]
    return changed


def as_trained(now: dict, recorded: dict) -> dict:
    """The preset's experiment `now` as the Trainer resolves it at run time, given what the
    recorded run read from its data (the labelled count: the schedule rule) and chose on its
    machine (`precision="auto"`). Stage rows hold the Trainer's resolved record."""
    from modules.trainer import experiment, hyper_rule

    count = recorded.get("num_labelled_examples") or now.get("num_labelled_examples") or 0
    exp = experiment.Experiment.from_dict(now)
    if count:
        exp = hyper_rule.fit_schedule(exp.replace(num_labelled_examples=count))
    resolved = json.loads(json.dumps(exp.to_dict()))
    if now.get("precision") == "auto" and recorded.get("precision"):
        resolved["precision"] = recorded["precision"]
    return resolved
