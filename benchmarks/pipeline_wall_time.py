"""Wall time per component of the default pipeline (Fashion-MNIST, 10 % labels, supervised).

Runs `beam_runner.py` in a child process (extra arguments are passed through), reads the
"HH:MM:SS INFO Component <id> is running/finished" progress lines it prints, and reports each
component's wall time, the total, the share of everything but the Trainer, and the child's
peak resident memory.

  .venv/bin/python benchmarks/pipeline_wall_time.py [-- beam_runner arguments]
"""

from __future__ import annotations

import datetime
import os
import re
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LINE = re.compile(r"^(\d\d:\d\d:\d\d) INFO Component (\S+) is (running|finished)\.")


def component_times(log_lines: list[str]) -> dict[str, float]:
    """Seconds between each component's `running` and `finished` lines."""
    started, took = {}, {}
    for line in log_lines:
        match = _LINE.match(line)
        if not match:
            continue
        clock = datetime.datetime.strptime(match.group(1), "%H:%M:%S")
        name = match.group(2)
        if match.group(3) == "running":
            started[name] = clock
        elif name in started:
            took[name] = (clock - started[name]).total_seconds() % 86_400
    return took


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["--"]:
        args = args[1:]
    output_dir = os.path.join(REPO, "runs", "benchmark_pipeline")
    command = [sys.executable, os.path.join(REPO, "beam_runner.py"), "--output_dir", output_dir,
               "--pipeline_name", f"bench_{int(time.time())}", "--no_cache", *args]
    start = time.time()
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    total = time.time() - start
    lines = (proc.stdout + proc.stderr).splitlines()
    if proc.returncode:
        sys.exit("pipeline failed:\n" + "\n".join(lines[-40:]))
    took = component_times(lines)
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    trainer = sum(v for k, v in took.items() if k.startswith("Trainer"))
    rows = [{"component": name, "wall_s": round(seconds, 1)} for name, seconds in took.items()]
    rows.append({"component": "total (process)", "wall_s": round(total, 1)})
    rows.append({"component": "share outside the Trainer",
                 "wall_s": f"{100 * (total - trainer) / total:.1f} %"})
    rows.append({"component": "peak RSS (GiB)", "wall_s": round(peak_gb, 2)})
    sys.path.insert(0, REPO)
    from benchmarks import common

    common.save("pipeline_wall_time", rows, ["component", "wall_s"],
                notes="beam_runner " + " ".join(command[2:]))


if __name__ == "__main__":
    main()
