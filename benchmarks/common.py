"""Shared helpers of the benchmark scripts: machine description and result files."""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR = os.path.join(REPO, "benchmarks", "results")
_ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


def machine() -> dict:
    """CPU model, core count, memory and library versions of this machine."""
    cpu = platform.processor() or ""
    isa: list[str] = []
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            lines = f.readlines()
        names = [line.split(":", 1)[1].strip() for line in lines
                 if line.startswith("model name")]
        cpu = names[0] if names else cpu
        flags = next((line.split(":", 1)[1].split() for line in lines
                      if line.startswith("flags")), [])
        # Machines of one kind differ here ("AMD EPYC" with and without AVX-512), and the
        # oneDNN kernels, bfloat16 above all, depend on it.
        isa = [flag for flag in _ISA_FLAGS if flag in flags]
    memory_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    import tensorflow as tf

    return {"cpu": cpu, "isa": isa, "cores": os.cpu_count(), "memory_gb": memory_gb,
            "python": platform.python_version(), "tensorflow": tf.__version__,
            "hostname": platform.node()}


def short_cpu(cpu: str) -> str:
    """"Intel(R) Xeon(R) Processor" -> "Intel Xeon"; "" where the result has no machine."""
    cpu = re.sub(r"\((R|TM)\)|\bProcessor\b|\bCPU\b|@.*", " ", cpu)
    return " ".join(cpu.split())


def cpu_label(machine_record: dict) -> str:
    """Short CPU name and its widest vector ISA ("AMD EPYC, AVX-512"): machines of one kind
    share a name and differ in ISA, which sets the training speed."""
    isa = machine_record.get("isa", [])
    widest = ("AMX" if "amx_tile" in isa else "AVX-512" if "avx512f" in isa
              else "AVX2" if "avx2" in isa else "")
    return ", ".join(p for p in (short_cpu(machine_record.get("cpu", "")), widest) if p)


def git_revision() -> str:
    """HEAD's short hash, with "-dirty" when tracked files other than benchmark results
    differ from it (the numbers then come from code that no commit holds; the benchmarks'
    own result files change as a grid fills and say nothing about the code)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True, cwd=REPO).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no",
                                  "--", ".", ":(exclude)benchmarks/results"],
                                 capture_output=True, text=True, check=True,
                                 cwd=REPO).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}-dirty" if changed else head


def training_record_path(stage: dict) -> str:
    """Where the Trainer wrote its run record for a stage of summary.json."""
    from modules import features

    return os.path.join(stage.get("tensorboard_logdir") or "", features.RUN_RECORD_FILE)


def training_record(stage: dict) -> dict:
    """The Trainer's experiment.json (eval history, final evaluation, fit time) of a stage of
    summary.json, or {} where the run left none."""
    path = training_record_path(stage)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def save(name: str, rows: list[dict], columns: list[str], notes: str = "") -> str:
    """Prints the table and writes results/<name>.json and .md with command, machine, date."""
    record = {"benchmark": name, "command": " ".join([sys.executable, *sys.argv]),
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "git_revision": git_revision(), "machine": machine(), "rows": rows,
              "notes": notes}
    table = markdown_table(rows, columns)
    print(table)
    os.makedirs(RESULTS_DIR, exist_ok=True)
    with open(os.path.join(RESULTS_DIR, f"{name}.json"), "w") as f:
        json.dump(record, f, indent=1)
    with open(os.path.join(RESULTS_DIR, f"{name}.md"), "w") as f:
        f.write(f"# {name}\n\n{table}\n\n- command: `{record['command']}`\n"
                f"- date: {record['date']}\n- revision: {record['git_revision']}\n"
                f"- machine: {json.dumps(record['machine'])}\n")
        if notes:
            f.write(f"- notes: {notes}\n")
    return os.path.join(RESULTS_DIR, f"{name}.json")
