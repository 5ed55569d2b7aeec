"""The label-efficiency grid's tables (per method, over seeds), its targets and its plot,
from the per-cell results that benchmarks/label_efficiency.py writes."""

from __future__ import annotations

import statistics

from benchmarks import common
from benchmarks.label_efficiency_experiments import FRACTION


def table(results: list[dict]) -> list[dict]:
    """Mean, spread and median over seeds of every (method, labels) in `results`.

    A method's own run gives its cell for a seed; a stage trained on the way to another
    preset (pseudo_labels' supervised labeller, MOAM steps 1 and 2) fills the cell only where
    no such run exists, so every seed counts once."""
    own: dict[tuple[str, str, int], dict] = {}
    nested: dict[tuple[str, str, int], dict] = {}
    for result in results:
        for row in result["stages"]:
            runs = own if row["method"] == result["preset"] else nested
            runs.setdefault((row["method"], result["labels"], result["seed"]),
                            dict(row, seed=result["seed"],
                                 machine=common.cpu_label(result.get("machine", {})),
                                 wall_time_s=result["wall_time_s"]
                                 if runs is own and not row.get("from_cache") else None))
    cells: dict[tuple[str, str], list[dict]] = {}
    for (method, labels, _), row in sorted({**nested, **own}.items()):
        cells.setdefault((method, labels), []).append(row)
    rows = []
    for (method, labels), runs in sorted(cells.items()):
        top1 = [r["top1"] for r in runs if r["top1"] is not None]
        walls = [r["wall_time_s"] for r in runs if r["wall_time_s"]]
        train = [r["train_s"] for r in runs if r.get("train_s")]
        method_train = [r["method_train_s"] for r in runs if r.get("method_train_s")]
        top5 = [r["top5"] for r in runs if r["top5"] is not None]
        rows.append({
            "method": method, "labels": labels, "seeds": len(runs),
            "top1_median": _pct(statistics.median(top1)) if top1 else "",
            "top1_mean": _pct(statistics.mean(top1)) if top1 else "",
            "top1_spread": _pct(max(top1) - min(top1)) if len(top1) > 1 else "",
            "top5_median": _pct(statistics.median(top5)) if top5 else "",
            "median_last3_top1": _pct(statistics.median(last)) if (last := [
                r["median_last3_top1"] for r in runs if r.get("median_last3_top1")]) else "",
            "rot_avg_top1": _pct(statistics.median(rot)) if (rot := [
                r["rot_avg_top1"] for r in runs if r.get("rot_avg_top1")]) else "",
            "train_img_per_s": round(statistics.median(ips)) if (ips := [
                r["train_images_per_s"] for r in runs if r.get("train_images_per_s")]) else "",
            "epochs": runs[0]["epochs"],
            "train_min": round(statistics.median(train) / 60, 1) if train else "",
            "method_train_min": (round(statistics.median(method_train) / 60, 1)
                                 if method_train else ""),
            "wall_min": round(statistics.mean(walls) / 60, 1) if walls else "",
            "machines": _machines(runs)})
    return rows


def _machines(runs: list[dict]) -> str:
    """Which CPU ran which seeds ("AMD EPYC: 0; Intel Xeon: 1, 2"): the time columns pool
    the seeds, so where two machines of different speed ran them, they mix both."""
    seeds: dict[str, list[int]] = {}
    for run in sorted(runs, key=lambda r: r["seed"]):
        seeds.setdefault(run["machine"] or "unknown", []).append(run["seed"])
    return "; ".join(f"{cpu}: {', '.join(map(str, s))}" for cpu, s in seeds.items())


def targets(rows: list[dict], time_rows: list[dict] = (),
            final_methods: frozenset[str] | None = None) -> list[dict]:
    """The issue's targets (medians over seeds, top-1 %) against the table's rows: what is
    needed, what is measured, and by how much it is met (+) or missed (-); with the
    `equal_time` rows, the training-time budget too. The best method is chosen among
    `final_methods` (default: every row), so a stage that a later one fine-tunes (MOAM
    steps 1 and 2) is not reported as a method's result."""
    median = {(r["method"], r["labels"]): (float(r["top1_median"]), r["seeds"])
              for r in rows if r["top1_median"]}

    def best(labels: str) -> tuple[str, float | None, int]:
        cells = [(top1, method, seeds) for (method, lab), (top1, seeds) in median.items()
                 if lab == labels and (final_methods is None or method in final_methods)]
        if not cells:
            return "", None, 0
        top1, method, seeds = max(cells)
        return method, top1, seeds

    rot_avg = {(r["method"], r["labels"]): float(r["rot_avg_top1"])
               for r in rows if r.get("rot_avg_top1")}

    def target(name: str, cell: tuple[float, int] | None, needed: float,
               label: str = "") -> dict:
        return {"target": name, "measured": f"{cell[0]:.2f}{label}" if cell else "",
                "seeds": cell[1] if cell else 0,
                "margin": round(cell[0] - needed, 2) if cell else ""}

    out = [target("supervised at 1pct, top-1 >= 83.0", median.get(("supervised", "1pct")), 83.0),
           target("supervised at 10pct, top-1 >= 90.5", median.get(("supervised", "10pct")),
                  90.5),
           target("moam_step_3 at 1pct, top-1 >= 88.0", median.get(("moam_step_3", "1pct")),
                  88.0)]
    for labels, needed in (("1pct", 90.0), ("10pct", 93.5)):
        method, top1, seeds = best(labels)
        out.append(target(f"best method at {labels}, top-1 >= {needed}",
                          (top1, seeds) if top1 is not None else None, needed, f" ({method})"))
    rotation, supervised = rot_avg.get(("s4l_rotation", "1pct")), median.get(
        ("supervised", "1pct"))
    gap = round(rotation - supervised[0], 2) if rotation and supervised else None
    out.append({"target": "1pct: s4l_rotation rotation-averaged - supervised >= 1.5 points",
                "measured": "" if gap is None else f"{gap:+.2f}",
                # The fewer seeds of the two medians compared.
                "seeds": (min(supervised[1], median.get(("s4l_rotation", "1pct"), (0, 0))[1])
                          if gap is not None else 0),
                "margin": "" if gap is None else round(gap - 1.5, 2)})
    for row in out:
        row["met"] = "" if row["margin"] == "" else ("yes" if row["margin"] >= 0 else "no")
    return out + [_lead_over_spread(rows, method) for method in SSL_METHODS_1PCT] + [
        _paper_order(median)] + ([_time_budget(time_rows)] if time_rows else [])


# The time budget: each trained model within 30 training minutes on this CPU kind,
# MOAM's three networks within 90 together.
BUDGET_MACHINE = "AMD EPYC, AVX-512"
BUDGET_MIN = 30.0
MOAM_BUDGET_MIN = 90.0


def _time_budget(time_rows: list[dict]) -> dict:
    """Which (method, labels) cells trained longer than the budget on `BUDGET_MACHINE`
    (median over the seeds that kind ran; a MOAM step counts the steps before it)."""
    timed = [r for r in time_rows if r["machine"] == BUDGET_MACHINE]
    over = []
    for row in timed:
        budget = MOAM_BUDGET_MIN if row["method"].startswith("moam") else BUDGET_MIN
        if row["method_train_min"] > budget:
            over.append((row["method_train_min"] - budget,
                         f"{row['method']} {row['labels']} {row['method_train_min']} min"))
    measured = ("over: " + "; ".join(text for _, text in over) if over else
                f"all {len(timed)} cells within" if timed else "")
    return {"target": f"training minutes on the {BUDGET_MACHINE} <= {BUDGET_MIN:g} per model "
                      f"(MOAM's steps <= {MOAM_BUDGET_MIN:g} together)",
            "measured": measured, "seeds": min((r["seeds"] for r in timed), default=0),
            "margin": -round(max(excess for excess, _ in over), 1) if over else "",
            "met": "" if not timed else ("no" if over else "yes")}


# The paper's S4L methods, each of which should beat supervised at 1 % by more than the seeds'
# spread, and the order of its Table 1 (tiers best first; one tier's methods are not ranked).
# s4l_rotation_upright (S4L-Rotation with the classifier on upright copies only) is judged
# as an S4L-Rotation, s4l_exemplar_upright (the classifier on one uncropped patch) as an
# S4L-Exemplar, moam_fixmatch_step_3 (FixMatch-style consistency in step 1) as a MOAM.
SSL_METHODS_1PCT = ("s4l_rotation", "s4l_rotation_upright", "s4l_exemplar",
                    "s4l_exemplar_upright", "vat", "vat_entmin", "pseudo_labels", "moam_step_3",
                    "moam_fixmatch_step_3")
PAPER_ORDER = (("moam_step_3", "moam_fixmatch_step_3"),
               ("s4l_rotation", "s4l_rotation_upright", "s4l_exemplar", "s4l_exemplar_upright"),
               ("vat_entmin",), ("vat",), ("pseudo_labels",), ("supervised",))


def _lead_over_spread(rows: list[dict], method: str) -> dict:
    """`method`'s median lead over supervised at 1 %, against the wider of the two seed
    spreads; no verdict until both have at least 2 seeds (a spread)."""
    cells = {r["method"]: r for r in rows if r["labels"] == "1pct" and r["top1_median"]}
    name = f"1pct: {method} - supervised > seed spread"
    if method not in cells or "supervised" not in cells:
        return {"target": name, "measured": "", "seeds": 0, "margin": "", "met": ""}
    lead = float(cells[method]["top1_median"]) - float(cells["supervised"]["top1_median"])
    seeds = min(cells[method]["seeds"], cells["supervised"]["seeds"])
    spreads = [cells[m].get("top1_spread", "") for m in (method, "supervised")]
    if seeds < 2 or "" in spreads:
        return {"target": name, "measured": f"{lead:+.2f} (spread unknown)", "seeds": seeds,
                "margin": "", "met": ""}
    spread = max(float(x) for x in spreads)
    margin = round(lead - spread, 2)
    return {"target": name, "measured": f"{lead:+.2f} (spread {spread:.2f})", "seeds": seeds,
            "margin": margin, "met": "yes" if margin > 0 else "no"}


def _paper_order(median: dict[tuple[str, str], tuple[float, int]]) -> dict:
    """Whether the 1 % medians follow the paper's order; the pairs that do not, by name."""
    ranked = [[(m, median[(m, "1pct")][0]) for m in tier if (m, "1pct") in median]
              for tier in PAPER_ORDER]
    ranked = [tier for tier in ranked if tier]
    inversions = [f"{low} {low_top1:.2f} >= {high} {high_top1:.2f}"
                  for i, tier in enumerate(ranked) for high, high_top1 in tier
                  for lower in ranked[i + 1:] for low, low_top1 in lower
                  if low_top1 >= high_top1]
    methods = sum(len(tier) for tier in ranked)
    return {"target": "1pct: the paper's order (MOAM > Rotation, Exemplar > VAT + EntMin > "
                      "VAT > Pseudo-labels > supervised)",
            "measured": "; ".join(inversions) if inversions else (
                f"in order ({methods} methods)" if methods > 1 else ""),
            "seeds": min((median[(m, "1pct")][1] for tier in ranked for m, _ in tier),
                         default=0),
            "margin": "", "met": "" if methods < 2 else ("no" if inversions else "yes")}


EQUAL_TIME_BUDGETS_MIN = (10, 20, 30)  # 30: the CPU budget per trained model


def equal_time(results: list[dict], budgets: tuple[int, ...] = EQUAL_TIME_BUDGETS_MIN,
               ) -> list[dict]:
    """Top-1 (%) each method had reached after T training minutes, median over the seeds that
    one CPU kind ran, for compute-matched comparisons beside the equal-steps table.

    A method's minutes count every network it trained (MOAM's and pseudo-labels' earlier
    stages first). A run that finished within T gives its final model's TFMA top-1; a longer
    one gives its last evaluation during training at or before T (its learning rate had not
    yet decayed there: a run scheduled to end at T would do better), or nothing if it had
    none yet ("")."""
    runs: dict[tuple[str, str, str], list[dict]] = {}
    for result in results:
        row = _own_stage(result)
        if not row or row.get("top1") is None or row.get("from_cache"):
            continue
        machine = common.cpu_label(result.get("machine", {})) or "unknown"
        runs.setdefault((result["preset"], result["labels"], machine), []).append(row)
    out = []
    for (method, labels, machine), rows in sorted(runs.items()):
        cell = {"method": method, "labels": labels, "machine": machine, "seeds": len(rows)}
        for budget in budgets:
            values = [v for v in (_top1_within(r, budget) for r in rows) if v is not None]
            cell[f"top1_{budget}min"] = (f"{statistics.median(values):.2f}"
                                         + ("" if len(values) == len(rows) else
                                            f" ({len(values)} of {len(rows)})")
                                         if values else "")
        cell["method_train_min"] = round(statistics.median(
            _minutes(r)[1] for r in rows), 1)
        out.append(cell)
    return out


def _own_stage(result: dict) -> dict | None:
    """The stage row of the network a result's own preset trained (its last stage)."""
    return next((s for s in result["stages"] if s["method"] == result["preset"]), None)


def _minutes(row: dict) -> tuple[float, float]:
    """(start, end) of a stage's training in the method's training minutes: a later stage
    (MOAM, pseudo-labels) starts after the networks it builds on."""
    total = (row.get("method_train_s") or row.get("train_s") or 0) / 60
    return total - (row.get("train_s") or 0) / 60, total


def _top1_within(row: dict, budget_min: float) -> float | None:
    before, total = _minutes(row)
    if total and total <= budget_min:
        return 100 * row["top1"]
    reached = [top1 for minutes, top1 in row.get("eval_curve") or []
               if before + minutes <= budget_min]
    return reached[-1] if reached else None


MARKERS = "osD^v<>phX*P"


def method_styles(methods: set[str]) -> dict[str, tuple[tuple, str]]:
    """A colour and a marker per method, distinct for up to 20 methods (matplotlib's default
    cycle has 10 colours, so an 11th method would share the first one's). tab20 pairs a dark
    and a light shade of each hue; the dark ones come first, so neighbours in name order
    (s4l_rotation, s4l_rotation_upright) get different hues."""
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    order = [*range(0, 20, 2), *range(1, 20, 2)]
    return {method: (cmap(order[i % 20]), MARKERS[i % len(MARKERS)])
            for i, method in enumerate(sorted(methods))}


def plot(rows: list[dict], path: str) -> None:
    """Median top-1 against the labelled fraction, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4), dpi=120)
    styles = method_styles({r["method"] for r in rows})
    for method, (colour, marker) in styles.items():
        points = sorted((FRACTION[r["labels"]] * 100, float(r["top1_median"]))
                        for r in rows if r["method"] == method and r["top1_median"])
        if points:
            ax.plot(*zip(*points, strict=True), color=colour, marker=marker, label=method)
    ax.set_xscale("log")
    ax.set_xticks([1, 10], ["1 %", "10 %"])
    ax.set_xlabel("labelled fraction of the 60,000 training images")
    ax.set_ylabel("top-1 (%), median over seeds")
    ax.set_title("Fashion-MNIST test set, equal training budget")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _pct(value: float) -> str:
    return f"{100 * value:.2f}"


def eval_curve(record: dict) -> list[list[float]]:
    """[training minutes, top-1 %] of each evaluation during training, from a Trainer run
    record. The minutes are measured (`elapsed_s` per round) where the record has them, else
    the run's training time spread evenly over its rounds (records before `elapsed_s`)."""
    evaluated = (record.get("eval_history") or {}).get("val_top1") or []
    train = record.get("train_history") or {}
    rounds = len(train.get("total_loss") or [])
    if not evaluated or not rounds:
        return []
    from pipeline.reporting import curves

    at = curves.eval_rounds(record, len(evaluated), rounds)
    elapsed = train.get("elapsed_s")
    if elapsed and len(elapsed) == rounds:
        minutes = [elapsed[r - 1] / 60 for r in at]
    else:
        minutes = [(record.get("train_seconds") or 0) * r / rounds / 60 for r in at]
    return [[round(m, 2), round(100 * v, 2)] for m, v in zip(minutes, evaluated, strict=True)]


def time_plot(results: list[dict], path: str) -> None:
    """Top-1 against training CPU minutes, one line per method and seed, a panel per label
    fraction: the evaluations during training, ending at the final model's TFMA top-1."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    labels = sorted({r["labels"] for r in results}, key=lambda lab: FRACTION[lab])
    if not labels:
        return
    fig, axes = plt.subplots(1, len(labels), figsize=(6 * len(labels), 4), dpi=120,
                             squeeze=False)
    styles = method_styles({r["preset"] for r in results})
    for result in sorted(results, key=lambda r: (r["preset"], r["seed"])):
        row = _own_stage(result)
        if not row or not row.get("eval_curve") or row.get("top1") is None:
            continue
        axis = axes[0][labels.index(result["labels"])]
        before, total = _minutes(row)
        points = [[before + m, top1] for m, top1 in row["eval_curve"]]
        points.append([total, 100 * row["top1"]])
        colour, marker = styles[result["preset"]]
        axis.plot(*zip(*points, strict=True), color=colour, alpha=0.8, marker=marker,
                  markersize=3,
                  label=result["preset"] if result["seed"] == min(
                      r["seed"] for r in results if r["preset"] == result["preset"]
                      and r["labels"] == result["labels"]) else None)
    for axis, lab in zip(axes[0], labels, strict=True):
        axis.set_title(f"{lab}: top-1 during training")
        axis.set_xlabel("training minutes, wall clock (every network of the method)")
        axis.set_ylabel("top-1 (%)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
