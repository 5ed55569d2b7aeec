"""The version of the user code that Transform and the Trainers run, for TFX's cache.

TFX's `module_file` packages a module's directory into a wheel, so that an edit of the code
changes the component's cache key and re-runs it, and then pip-installs that wheel at every
execution: about 3 s of pip per Transform and per Trainer, a dozen times in a multi-stage run.
The pipeline instead names its functions by import path (`preprocessing_fn`, `run_fn`: the
package is installed wherever a component runs, containers included) and puts a digest of the
source files those functions import into the component's `custom_config`, which TFX's cache
key includes. An edit re-runs the component and everything after it, as module files did;
an edit of the Trainer's code alone leaves Transform cached.
"""

from __future__ import annotations

import hashlib
import os

import modules

MODULES_DIR = os.path.dirname(os.path.abspath(modules.__file__))
# What each component imports, relative to MODULES_DIR (a directory counts with its subfolders).
TRANSFORM_SOURCES = ("__init__.py", "features.py", "transform")
TRAINER_SOURCES = ("",)  # The whole package: the Trainer imports features, transform, trainer.
CUSTOM_CONFIG_KEY = "code_version"


def _python_files(root: str, entry: str) -> list[str]:
    path = os.path.join(root, entry)
    if os.path.isfile(path):
        return [entry]
    found = []
    for directory, subdirs, files in os.walk(path):
        subdirs[:] = sorted(d for d in subdirs if d != "__pycache__")
        found += [os.path.relpath(os.path.join(directory, f), root)
                  for f in sorted(files) if f.endswith(".py")]
    return found


def source_digest(entries: tuple[str, ...], root: str = MODULES_DIR) -> str:
    """SHA-256 (16 hex digits) of the names and contents of the .py files of `entries`.

    Raises:
      FileNotFoundError: an entry names nothing under `root`.
    """
    digest = hashlib.sha256()
    for entry in entries:
        if not os.path.exists(os.path.join(root, entry)):
            raise FileNotFoundError(f"{os.path.join(root, entry)}: no such source")
        for name in _python_files(root, entry):
            with open(os.path.join(root, name), "rb") as f:
                content = f.read()
            digest.update(f"{name}\0{len(content)}\0".encode())
            digest.update(content)
    return digest.hexdigest()[:16]


def transform_version(root: str = MODULES_DIR) -> str:
    return source_digest(TRANSFORM_SOURCES, root)


def trainer_version(root: str = MODULES_DIR) -> str:
    return source_digest(TRAINER_SOURCES, root)
