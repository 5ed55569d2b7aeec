#!/usr/bin/env bash
# Creates .venv with Python 3.10, installs this package with the pinned TFX 1.16 set
# (constraints.txt), Debian's dataset-fashion-mnist and Debian's chromium. Idempotent: a
# second run checks and returns in seconds.
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

# Debian packages: dataset-fashion-mnist (the default data) and chromium (the headless browser
# tests/pipeline/test_report.py opens the run report with). One `apt-get update`, no
# recommended packages (chromium's recommends pull in systemd and ~130 others), a wait for
# another apt's lock, and no prompts (DEBIAN_FRONTEND survives sudo through `env`).
FMNIST_DIR=/usr/share/datasets/fashion-mnist
APT_PACKAGES=()
[ -f "$FMNIST_DIR/train-images-idx3-ubyte.gz" ] || APT_PACKAGES+=(dataset-fashion-mnist)
command -v chromium >/dev/null 2>&1 || APT_PACKAGES+=(chromium)
if [ ${#APT_PACKAGES[@]} -gt 0 ]; then
  echo "setup.sh: installing Debian packages: ${APT_PACKAGES[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  APT=($SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -y -qq)
  "${APT[@]}" update
  "${APT[@]}" install --no-install-recommends "${APT_PACKAGES[@]}"
fi

# A .venv made by another Python (an older checkout, a different interpreter) is rebuilt.
if [ -x .venv/bin/python ] && ! .venv/bin/python -c \
    'import sys; sys.exit(sys.version_info[:2] != (3, 10))' 2>/dev/null; then
  echo "setup.sh: .venv is not Python 3.10; rebuilding it"
  rm -rf .venv
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
PIP=(.venv/bin/python -m pip install -q --disable-pip-version-check)
# uv (a pinned installer, used here only) installs the same pinned set as pip, package for
# package, in a fraction of the time: 46 s (about a minute with --compile-bytecode) against
# 186 s into a fresh .venv on the AVX2-only AMD EPYC, most of CI's set-up. pip stays the fallback. --compile-bytecode: pip
# compiles at install, uv does not, and where PYTHONDONTWRITEBYTECODE is set (as on this project's
# machines) every process would compile TensorFlow's and Beam's sources again at import: the
# tests that start processes took twice as long.
"${PIP[@]}" "pip==24.2" "setuptools==75.1.0" wheel "uv==0.13.9"
install() {
  .venv/bin/uv pip install --python .venv/bin/python -q --compile-bytecode "$@" || {
    echo "setup.sh: uv failed; installing with pip"; "${PIP[@]}" "$@"; }
}
echo "setup.sh: installing the pinned TFX 1.16 stack (a minute or more on a fresh machine)"
install -c constraints.txt -e ".[dev]"
# tfx 1.16 declares tensorflow-hub<0.16, but 0.15.0 fails to import under TF 2.16; 0.16.1
# works with this stack (docs/environment.md §1). It needs nothing the set lacks: --no-deps.
install --no-deps "tensorflow-hub==$HUB_VERSION"
echo "$WANT" > "$STAMP"
echo "setup.sh: done"
