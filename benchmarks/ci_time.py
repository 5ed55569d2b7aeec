"""Wall time of CI: `.ci/run` on a fresh clone of this checkout's HEAD, as CI runs it.

Clones HEAD into a temporary folder (with `shared/` linked beside it, as CI lays it out), runs
`bash .ci/run` there with CI=true and no standard input, and records the whole run (set-up
included), the test run's own time and counts, and its five slowest tests. Each run adds a row
to results/ci_time.{json,md} (rows of earlier runs are kept: the machine kinds differ).

  .venv/bin/python benchmarks/ci_time.py
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# pytest's closing line, e.g. "==== 364 passed, 1 warning in 642.02s (0:10:42) ====".
_SUMMARY = re.compile(r"=+ (.*?) in ([\d.]+)s")
_DURATION = re.compile(r"^([\d.]+)s (setup|call|teardown) +(\S+)")


def parse_output(output: str) -> dict:
    """Counts, the test run's seconds and the five slowest tests from pytest's output."""
    summaries = _SUMMARY.findall(output)
    counts, seconds = summaries[-1] if summaries else ("", "nan")
    slowest = [f"{m.group(3).split('::')[-1].split('@')[0]} {float(m.group(1)):.0f} s"
               for m in map(_DURATION.match, output.splitlines()) if m][:5]
    return {"counts": counts, "test_s": float(seconds), "slowest": "; ".join(slowest)}


def run_ci() -> dict:
    with tempfile.TemporaryDirectory(prefix="ci_time_") as root:
        clone = os.path.join(root, "repo")
        subprocess.run(["git", "clone", "-q", REPO, clone], check=True)
        shared = os.path.join(os.path.dirname(REPO), "shared")
        if os.path.isdir(shared):
            os.symlink(shared, os.path.join(root, "shared"))
        start = time.time()
        proc = subprocess.run(["bash", ".ci/run"], cwd=clone, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, env={**os.environ, "CI": "true"})
        total = time.time() - start
    output = proc.stdout + proc.stderr
    log = os.path.join(REPO, "runs", "ci_time.log")
    os.makedirs(os.path.dirname(log), exist_ok=True)
    with open(log, "w") as f:
        f.write(output)
    if proc.returncode:
        failures = [line for line in output.splitlines()
                    if line.startswith(("FAILED", "ERROR")) or "crashed" in line]
        print("\n".join(failures[-40:]) or output[-5000:], file=sys.stderr)
        print(f"whole output: {log}", file=sys.stderr)
    return {"exit": proc.returncode, "total_s": round(total), **parse_output(output)}


def main() -> int:
    row = {"cpu": common.cpu_label(common.machine()), "revision": common.git_revision(),
           **run_ci()}
    path = os.path.join(common.RESULTS_DIR, "ci_time.json")
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            rows = json.load(f).get("rows", [])
    common.save("ci_time", [*rows, row],
                ["cpu", "revision", "exit", "total_s", "test_s", "counts", "slowest"],
                notes="total_s: the whole .ci/run on a fresh clone (set-up, lint, tests); "
                      "test_s: pytest's own time. CI's limit is 5,400 s.")
    return row["exit"]


if __name__ == "__main__":
    sys.exit(main())
