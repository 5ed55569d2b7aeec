"""`--beam_workers N`: the multi-processing DirectRunner gives the in-process results.

Multi-processing mode has a history of hangs and dropped records (docs/environment.md §3), so both
modes run the pipeline's Beam work (S4LExampleGen, StatisticsGen, Transform with materialised
output) on a deterministic Fashion-MNIST subset, each in a subprocess under a time limit, and
every output record and statistics count must match. The full 70,000 images take many
minutes per mode on this 2-core machine (3,500 images: 80 s in-process, 209 s with 2 worker
processes), hence the subset.
"""

import json
import os
import signal
import subprocess
import sys

import pytest

from pipeline import cli
from pipeline.components.example_gen import sources
from pipeline.runners import local

pytestmark = pytest.mark.xdist_group("beam_modes")

HERE = os.path.dirname(os.path.abspath(__file__))
TRAIN_IMAGES = 600  # The first 600 training and 100 test images, in 4 shards per split.
TIMEOUT_S = 600


def _run(tmp_path, workers: int) -> dict:
    root = tmp_path / f"workers{workers}"
    root.mkdir()
    digest, log = root / "digest.json", root / "log.txt"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "beam_modes.py"), sources.FASHION_MNIST_DIR,
             str(root), str(workers), str(digest), str(TRAIN_IMAGES)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait(TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # The run and its Beam worker processes.
            proc.wait()
            pytest.fail(f"--beam_workers {workers} did not finish in {TIMEOUT_S} s; see {log}")
    assert code == 0, log.read_text()[-3000:]
    return json.loads(digest.read_text())


@pytest.mark.skipif(not os.path.isdir(sources.FASHION_MNIST_DIR),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_multi_processing_writes_the_in_process_records(tmp_path):
    in_process = _run(tmp_path, 1)
    multi = _run(tmp_path, 2)
    assert in_process["beam_pipeline_args"] == []  # The DirectRunner's in-process default.
    assert multi["beam_pipeline_args"] == ["--direct_running_mode=multi_processing",
                                           "--direct_num_workers=2"]
    # S4LExampleGen converts in 2 threads of its process instead (its work is outside the
    # GIL); what it wrote must still be the in-process records.
    assert in_process["example_gen_beam_args"] == []
    assert multi["example_gen_beam_args"][-1] == "--direct_running_mode=multi_threading"
    counts = {split: d["count"] for split, d in in_process["transformed"].items()}
    assert counts["unlabelled"] == TRAIN_IMAGES and counts["eval"] == TRAIN_IMAGES // 6
    assert 0 < counts["labelled"] <= TRAIN_IMAGES // 10
    for output in ("examples", "statistics", "transformed"):
        assert multi[output] == in_process[output], output


def test_beam_workers_flag():
    from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions

    def mode(workers):
        options = PipelineOptions(cli.direct_beam_args(workers)).view_as(DirectOptions)
        return options.direct_running_mode, options.direct_num_workers

    # One worker: no arguments (so TFX packages nothing for remote workers), which the
    # DirectRunner takes as in-process with one worker.
    assert cli.direct_beam_args(1) == [] and mode(1) == ("in_memory", 1)
    args = cli.build_parser().parse_args(["--beam_workers", "3"])
    assert mode(args.beam_workers) == ("multi_processing", 3)
    # S4LExampleGen's arguments come after the pipeline's: 3 threads, unless the user's own
    # Beam arguments (after --) choose a running mode.
    converter = PipelineOptions([*cli.direct_beam_args(3), *cli.example_gen_beam_args(3)])
    assert (converter.view_as(DirectOptions).direct_running_mode,
            converter.view_as(DirectOptions).direct_num_workers) == ("multi_threading", 3)
    assert cli.example_gen_beam_args(1) == []
    assert cli.example_gen_beam_args(3, ["--direct_running_mode=in_memory"]) == []


def test_beam_workers_below_one_is_refused(image_folder, tmp_path, capsys):
    code = local.main(["--source", "image_folder", "--data_path", image_folder,
                       "--output_dir", str(tmp_path / "out"), "--beam_workers", "0"])
    assert code == 2
    assert "--beam_workers must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
