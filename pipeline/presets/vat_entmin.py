"""VAT + EntMin (paper Table 1 row "VAT + EntMin"; docs/original_s4l.md §§4.4 and 5.3).

config/vat_entmin.sh = config/vat.sh plus entmin_factor 1.0: the entropy of the clean
predictions on labelled and unlabelled images is minimised with weight 1.

Small images: `vat`'s values with the recipe's weak labelled views (pad-and-crop + flip), not
its strong ones: with strong labelled views the supervised term never sees the weak views
that EntMin makes confident, and the model collapsed at one test seed of the 1 % grid
(37.3 %, whole classes merged; docs/results.md, "Test set with strong labelled views").

Run: .venv/bin/python beam_runner.py --preset vat_entmin
"""

from __future__ import annotations

from modules.trainer.experiment import Experiment
from pipeline.presets import vat


def get_config(dataset: str = "fashion_mnist", labels: str = "10pct") -> Experiment:
    return vat.get_config(dataset, labels, entmin=1.0).replace(labelled_augment="weak")
