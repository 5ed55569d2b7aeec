"""Process settings that must be in place before TensorFlow is first imported.

`pipeline/__init__.py` imports this module, so importing anything from the package sets them
first; entry points (beam_runner.py, the runners, the Airflow DAG file) need nothing else.
Each is a default: a value already in the environment wins.
"""

from __future__ import annotations

import os
import warnings

# TFX 1.16 needs Keras 2: tf-keras, not Keras 3, must back tf.keras (docs/environment.md).
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# TensorFlow's C++ warnings (TensorRT missing, grappler loop optimisation, ...) are noise to
# a user of the pipeline: errors only.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# oneDNN kernels: about 2x the small ResNet's training throughput on AVX2-only CPUs
# (benchmarks/results/train_step_throughput.md); TF 2.16 leaves them off on CPUs without
# AVX-512.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

# google-api-core warns on every import that Python 3.10 is old; TFX 1.16 needs 3.10.
warnings.filterwarnings("ignore", category=FutureWarning, module="google.*")
