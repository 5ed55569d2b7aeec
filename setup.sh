#!/usr/bin/env bash
# Creates .venv with Python 3.10, installs this package with the pinned TFX 1.16 set
# (constraints.txt), Debian's dataset-fashion-mnist and Debian's chromium (the headless
# browser tests/pipeline/test_report.py opens the run report with). Idempotent: a second run
# checks and returns in seconds.
set -euo pipefail
cd "$(dirname "$0")"

PY310=""
for candidate in python3.10 "$(pyenv root 2>/dev/null)/versions/3.10.13/bin/python" \
                 /root/.pyenv/versions/3.10.13/bin/python /usr/bin/python3.10; do
  if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 \
     && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' 2>/dev/null; then
    PY310=$(command -v "$candidate"); break
  fi
done
if [ -z "$PY310" ]; then
  echo "setup.sh: Python 3.10 is required (tfx 1.16 needs >=3.9,<3.11); install it (pyenv install 3.10)" >&2
  exit 1
fi

FMNIST_DIR=/usr/share/datasets/fashion-mnist
if [ ! -f "$FMNIST_DIR/train-images-idx3-ubyte.gz" ]; then
  echo "setup.sh: installing Debian package dataset-fashion-mnist"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist
fi

if ! command -v chromium >/dev/null 2>&1; then
  echo "setup.sh: installing Debian package chromium (headless browser for the report test)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium
fi

STAMP=.venv/.s4l-installed
WANT=$(cat pyproject.toml constraints.txt setup.sh | sha256sum | cut -c1-16)
HUB_VERSION=0.16.1
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && .venv/bin/python -c '
import importlib.metadata as m
assert m.version("tfx") == "1.16.0" and m.version("s4l-tfx")
assert m.version("tensorflow-hub") == "'"$HUB_VERSION"'"' 2>/dev/null; then
  echo "setup.sh: environment up to date (.venv)"
  exit 0
fi
[ -x .venv/bin/python ] || "$PY310" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check "pip==24.2" "setuptools==75.1.0" wheel
echo "setup.sh: installing the pinned TFX 1.16 stack (a few minutes on a fresh machine)"
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev]"
# tfx 1.16 declares tensorflow-hub<0.16, but 0.15.0 fails to import under TF 2.16; 0.16.1
# works with this stack (TFX_NOTES section 1). It needs nothing the set lacks: --no-deps.
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps \
  "tensorflow-hub==$HUB_VERSION"
echo "$WANT" > "$STAMP"
echo "setup.sh: done"
