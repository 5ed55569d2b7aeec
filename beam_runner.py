"""Runs the S4L pipeline on this machine (LocalDagRunner, in-process Beam).

  .venv/bin/python beam_runner.py --preset supervised --labelled_fraction 0.1
  .venv/bin/python beam_runner.py --help

A thin entry point: the command line is pipeline/cli.py, the run pipeline/runners/local.py.
Nothing imports this script.
"""

import sys

from pipeline.runners import local

if __name__ == "__main__":
    sys.exit(local.main())
