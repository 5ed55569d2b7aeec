"""Process settings that must be in place before TensorFlow is first imported.

`pipeline/__init__.py` imports this module, so importing anything from the package sets them
first; entry points (beam_runner.py, the runners, the Airflow DAG file) need nothing else.
Each is a default: a value already in the environment wins.
"""

from __future__ import annotations

import contextlib
import os
import warnings

# TFX 1.16 needs Keras 2: tf-keras, not Keras 3, must back tf.keras (docs/environment.md).
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# TensorFlow's C++ warnings (TensorRT missing, grappler loop optimisation, ...) are noise to
# a user of the pipeline: errors only.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# oneDNN kernels are left to TensorFlow's default (on for CPUs with AVX-512, off elsewhere).
# Forced on an AVX2-only AMD EPYC (TF 2.16.2) they trained about 2x faster on wrong
# gradients: a strided 1x1 projection's kernel gradient 3.6x off in a narrow network
# (tests/modules/test_model_resnet_v2.py checks the gradients against float64 on every
# machine that runs the tests; docs/environment.md).

# TFX installs each run's packaged Transform/Trainer code with pip: its progress lines are
# noise on a run's console (errors still print).
os.environ.setdefault("PIP_QUIET", "1")

# google-api-core warns on every import that Python 3.10 is old; TFX 1.16 needs 3.10.
warnings.filterwarnings("ignore", category=FutureWarning, module="google.*")

# What TensorFlow 2.16's C++ code prints at import on every machine, GPU or not: this build
# registers its CUDA plugins twice (reported at error level) and looks for TensorRT.
_IMPORT_NOISE = ("Unable to register cuFFT factory", "Unable to register cuDNN factory",
                 "Unable to register cuBLAS factory", "TF-TRT Warning: Could not find TensorRT")


class _QuietTensorFlowImport:
    """A meta-path finder for the first `import tensorflow`: runs the real import with
    stderr (file descriptor 2, where C++ writes) captured, then writes back every line but
    `_IMPORT_NOISE`. It removes itself at that import."""

    def find_spec(self, name, path=None, target=None):
        import importlib.util
        import sys

        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            real_exec = spec.loader.exec_module

            def exec_module(module):
                with _filtered_stderr():
                    real_exec(module)

            spec.loader.exec_module = exec_module
        return spec


@contextlib.contextmanager
def _filtered_stderr():
    """Captures file descriptor 2 (where C++ writes) and writes back every line but
    `_IMPORT_NOISE` when the block ends."""
    import sys
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode("utf-8", "replace").splitlines(keepends=True):
                if not any(noise in line for noise in _IMPORT_NOISE):
                    sys.stderr.write(line)
            sys.stderr.flush()


def quiet_tensorflow_import() -> None:
    """Makes the first `import tensorflow`, wherever it happens, drop TensorFlow's
    import-time C++ noise (`_IMPORT_NOISE`); every other line it writes to stderr passes
    through. Nothing is imported now (`--help` stays fast); a no-op once TensorFlow is in.

    The C++ log level cannot do this: these lines are errors, and level 3 would hide real
    ones for the whole run.
    """
    import sys

    if "tensorflow" not in sys.modules and not any(
            isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())
