"""Typed settings that `create_pipeline` takes besides the experiment (no I/O here).

`SplitOptions` is defined beside the split selection it configures and re-exported here.
"""

from __future__ import annotations

import dataclasses

from pipeline.components import data_gate
from pipeline.components.example_gen.splits import SplitOptions

__all__ = ["DataConfig", "EvalConfig", "SplitOptions"]


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how the splits are made."""

    source: str = "fashion_mnist"
    data_path: str = ""
    splits: SplitOptions = SplitOptions()
    num_classes: int = 1000
    label_offset: int = 1
    # Changes when the source files change, so ExampleGen is not served from cache.
    fingerprint: str = ""
    # Which ExampleValidator anomalies stop the run before Transform (data_gate.STOP_ON).
    stop_on_anomalies: str = data_gate.DEFAULT_STOP_ON

    def __post_init__(self):
        data_gate.check_policy(self.stop_on_anomalies)


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Blessing thresholds: a floor on overall top-1 and the drop allowed against the
    latest blessed model (TFMA skips the change threshold on the first run)."""

    min_top1: float = 0.5
    max_top1_drop: float = 0.01
