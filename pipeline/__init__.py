"""The S4L TFX pipeline: the graph, its components, presets, runners and reports."""

from pipeline import tf_env  # noqa: F401  (before anything imports TensorFlow)
