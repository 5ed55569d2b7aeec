"""Feature keys, split names and the serving model's signature names: the one place every
other file takes them from.

Raw keys follow the TF-slim ImageNet TFRecord layout (docs/original_s4l.md §1.2) with labels
0-based (normalised once, at ingestion). Transformed keys are free of "/".
"""

IMAGE_KEY = "image/encoded"
FORMAT_KEY = "image/format"
LABEL_KEY = "image/class/label"
FILENAME_KEY = "image/filename"
CLASS_TEXT_KEY = "image/class/text"
HEIGHT_KEY = "image/height"
WIDTH_KEY = "image/width"

# Class logits a pseudo-labelling model appends to every example (BulkInferrer).
PSEUDO_LOGITS_KEY = "image/class/pseudo_logits"

# Outputs of the Transform graph.
TRANSFORMED_IMAGE_KEY = "image"
TRANSFORMED_LABEL_KEY = "label"

# Split names of the Examples artifact built by S4LExampleGen.
LABELLED_SPLIT = "labelled"
UNLABELLED_SPLIT = "unlabelled"
EVAL_SPLIT = "eval"
SPLITS = (LABELLED_SPLIT, UNLABELLED_SPLIT, EVAL_SPLIT)

# Signatures of the exported serving model (modules/trainer/export.py): the upright
# prediction, and the logits averaged over the views the classifier trained on.
SERVING_SIGNATURE = "serving_default"
AVERAGED_VIEWS_SIGNATURE = "averaged_views"
# The signature a pseudo-labelling BulkInferrer calls, by `pseudo_label_views`.
PSEUDO_LABEL_SIGNATURES = {"upright": SERVING_SIGNATURE, "averaged": AVERAGED_VIEWS_SIGNATURE}

# Written next to the split directories of the Examples artifact.
SPLIT_STATS_FILE = "split_stats.json"

# The Trainer's record of one run (experiment, schedule, evaluations, final metrics), written
# into its model_run directory; the HubPusher's model card and the benchmarks read it.
RUN_RECORD_FILE = "experiment.json"
