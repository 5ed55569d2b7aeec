"""Wall time and peak memory per component of the default pipeline (Fashion-MNIST, 10 %
labels, supervised).

Runs `beam_runner.py` in a child process (extra arguments are passed through), follows the
"HH:MM:SS INFO Component <id> is running/finished" progress lines it prints, and samples the
child's resident memory (Linux /proc) every 0.2 s. Reports each component's wall time and the
peak RSS seen while it ran, the total, the share of everything but the Trainer (goal: at most
a quarter) and the child's overall peak. LocalDagRunner runs components one after another in
the one process, so a component's peak includes what earlier components left allocated.

  .venv/bin/python benchmarks/pipeline_wall_time.py [-- beam_runner arguments]
"""

from __future__ import annotations

import datetime
import os
import re
import subprocess
import sys
import threading
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


def rss_bytes(pid: int) -> int:
    """Resident memory of `pid` and its live children (0 once it has exited)."""
    total = 0
    for proc in [pid, *_children(pid)]:
        try:
            with open(f"/proc/{proc}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            direct = [int(p) for p in f.read().split()]
    except OSError:
        return []
    return direct + [c for p in direct for c in _children(p)]


class PeakPerComponent:
    """Peak RSS of a process while each component runs, fed by its progress lines."""

    def __init__(self, pid: int, interval_s: float = 0.2):
        self._pid, self._interval = pid, interval_s
        self._running: set[str] = set()
        self.peaks: dict[str, int] = {}
        self.overall = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def line(self, line: str) -> None:
        match = _LINE.match(line)
        if not match:
            return
        with self._lock:
            if match.group(3) == "running":
                self._running.add(match.group(2))
                self.peaks.setdefault(match.group(2), 0)
            else:
                self._running.discard(match.group(2))
        self._record(rss_bytes(self._pid))

    def _record(self, rss: int) -> None:
        with self._lock:
            self.overall = max(self.overall, rss)
            for name in self._running:
                self.peaks[name] = max(self.peaks[name], rss)

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            self._record(rss_bytes(self._pid))


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["--"]:
        args = args[1:]
    output_dir = os.path.join(REPO, "runs", "benchmark_pipeline")
    command = [sys.executable, os.path.join(REPO, "beam_runner.py"), "--output_dir", output_dir,
               "--pipeline_name", f"bench_{int(time.time())}", "--no_cache", *args]
    start = time.time()
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    memory = PeakPerComponent(proc.pid)
    memory.start()
    lines = []
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        memory.line(lines[-1])
    proc.wait()
    memory.stop()
    total = time.time() - start
    if proc.returncode:
        sys.exit("pipeline failed:\n" + "\n".join(lines[-40:]))
    took = component_times(lines)
    trainer = sum(v for k, v in took.items() if k.startswith("Trainer"))
    gib = 2**30
    rows = [{"component": name, "wall_s": round(seconds, 1),
             "peak_rss_gib": round(memory.peaks.get(name, 0) / gib, 2)}
            for name, seconds in took.items()]
    rows.append({"component": "total (process)", "wall_s": round(total, 1),
                 "peak_rss_gib": round(memory.overall / gib, 2)})
    rows.append({"component": "share outside the Trainer",
                 "wall_s": f"{100 * (total - trainer) / total:.1f} %"})
    sys.path.insert(0, REPO)
    from benchmarks import common

    common.save("pipeline_wall_time", rows, ["component", "wall_s", "peak_rss_gib"],
                notes="beam_runner " + " ".join(command[2:]))


if __name__ == "__main__":
    main()
