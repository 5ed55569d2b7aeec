"""Runs the pipeline's Beam work (ExampleGen, StatisticsGen, Transform with materialised output)
under LocalDagRunner with `--beam_workers N` and writes a digest of every output record.

Run as a script (in a subprocess, so a hung multi-processing run can be killed):
  python tests/runners/beam_modes.py DATA_DIR ROOT WORKERS DIGEST_JSON [LIMIT]

LIMIT > 0 first copies the first LIMIT training and LIMIT // 6 test images of the Fashion-MNIST
IDX files in DATA_DIR into ROOT/data (a deterministic subset).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gzip  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import struct  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

warnings.filterwarnings("ignore", category=FutureWarning, module="google.*")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

# The components whose work runs on Beam (StatisticsGen, Transform) and their inputs.
BEAM_COMPONENTS = ("S4LExampleGen", "StatisticsGen", "ImportSchemaGen", "Transform")


def write_subset(data_dir: str, out_dir: str, train: int, test: int) -> str:
    """Copies the first `train`/`test` records of the Fashion-MNIST IDX files."""
    os.makedirs(out_dir, exist_ok=True)
    for stem, count in (("train", train), ("t10k", test)):
        with gzip.open(os.path.join(data_dir, f"{stem}-images-idx3-ubyte.gz"), "rb") as f:
            _, _, rows, cols = struct.unpack(">IIII", f.read(16))
            pixels = f.read(count * rows * cols)
        with gzip.open(os.path.join(data_dir, f"{stem}-labels-idx1-ubyte.gz"), "rb") as f:
            f.read(8)
            labels = f.read(count)
        with gzip.open(os.path.join(out_dir, f"{stem}-images-idx3-ubyte.gz"), "wb") as f:
            f.write(struct.pack(">IIII", 0x803, count, rows, cols) + pixels)
        with gzip.open(os.path.join(out_dir, f"{stem}-labels-idx1-ubyte.gz"), "wb") as f:
            f.write(struct.pack(">II", 0x801, count) + labels)
    return out_dir


def _records_digest(split_dir: str) -> dict:
    """Count and SHA-256 of the tf.Examples of a split, independent of record order and of
    the order of each example's feature map (protobuf maps serialise in arbitrary order:
    records written by different processes differ there)."""
    import tensorflow as tf

    files = sorted(tf.io.gfile.glob(os.path.join(split_dir, "*")))
    records = sorted(
        tf.train.Example.FromString(r.numpy()).SerializeToString(deterministic=True)
        for r in tf.data.TFRecordDataset(files, "GZIP"))
    digest = hashlib.sha256()
    for record in records:
        digest.update(hashlib.sha256(record).digest())
    return {"count": len(records), "sha256": digest.hexdigest()}


def _statistics_digest(split_dir: str) -> dict:
    """Exact counts (examples, values per feature) and numeric min/max of a statistics split."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    with open(os.path.join(split_dir, "FeatureStats.pb"), "rb") as f:
        stats = statistics_pb2.DatasetFeatureStatisticsList.FromString(f.read())
    dataset = stats.datasets[0]
    features = {}
    for feature in dataset.features:
        name = feature.path.step[0] if feature.path.step else feature.name
        common = (feature.num_stats.common_stats if feature.HasField("num_stats")
                  else feature.bytes_stats.common_stats if feature.HasField("bytes_stats")
                  else feature.string_stats.common_stats)
        entry = {"non_missing": common.num_non_missing, "values": common.tot_num_values}
        if feature.HasField("num_stats"):
            entry.update(min=feature.num_stats.min, max=feature.num_stats.max)
        features[name] = entry
    return {"num_examples": dataset.num_examples, "features": features}


def run(data_dir: str, root: str, workers: int) -> dict:
    """Runs BEAM_COMPONENTS of create_pipeline(...) and digests their outputs."""
    from tfx import v1 as tfx

    from pipeline import cli
    from pipeline import pipeline as pipeline_lib

    args = cli.build_parser().parse_args([
        "--data_path", data_dir, "--beam_workers", str(workers), "--no_cache",
        "--output_dir", root, "--push_destination", os.path.join(root, "pushed")])
    spec = cli.local_run_spec(args)
    pipeline_root, metadata_path = spec.paths.pipeline_root, spec.paths.metadata_path
    full = pipeline_lib.create_pipeline(**spec.pipeline_kwargs(), materialize=True)
    components = [c for c in full.components if c.id in BEAM_COMPONENTS]
    for component in components:  # Cut the edges to the stages left out.
        for downstream in list(component.downstream_nodes):
            if downstream.id not in BEAM_COMPONENTS:
                component.remove_downstream_node(downstream)
    pipeline = tfx.dsl.Pipeline(
        pipeline_name="s4l_beam_modes", pipeline_root=pipeline_root, components=components,
        enable_cache=False, metadata_connection_config=full.metadata_connection_config,
        beam_pipeline_args=full.beam_pipeline_args)
    start = time.time()
    tfx.orchestration.LocalDagRunner().run(pipeline)
    elapsed = time.time() - start
    by_id = {c.id: c for c in components}
    digest: dict = {"beam_pipeline_args": full.beam_pipeline_args,
                    # The pipeline's arguments, then S4LExampleGen's own (later ones win).
                    "example_gen_beam_args": list(
                        by_id["S4LExampleGen"].executor_spec.beam_pipeline_args),
                    "wall_time_s": round(elapsed, 1)}
    for name, component, key in (("examples", "S4LExampleGen", "examples"),
                                 ("transformed", "Transform", "transformed_examples"),
                                 ("statistics", "StatisticsGen", "statistics")):
        uri = _output_uri(metadata_path, by_id[component].id, key)
        digest[name] = {}
        for split in sorted(os.listdir(uri)):
            if not split.startswith("Split-"):
                continue
            split_dir = os.path.join(uri, split)
            digest[name][split[len("Split-"):]] = (
                _statistics_digest(split_dir) if name == "statistics"
                else _records_digest(split_dir))
    return digest


def _output_uri(metadata_path: str, node_id: str, key: str) -> str:
    """URI of the newest `key` output of node `node_id` in the SQLite ML Metadata."""
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    store = metadata_store.MetadataStore(config)
    context = store.get_context_by_type_and_name("node", f"s4l_beam_modes.{node_id}")
    latest = max(store.get_executions_by_context(context.id), key=lambda e: e.id)
    for event in store.get_events_by_execution_ids([latest.id]):
        if (event.type == metadata_store_pb2.Event.OUTPUT
                and event.path.steps and event.path.steps[0].key == key):
            return store.get_artifacts_by_id([event.artifact_id])[0].uri
    raise LookupError(f"{node_id} has no output {key!r}")


def main(argv: list[str]) -> int:
    data_dir, root, workers, digest_path = argv[:4]
    limit = int(argv[4]) if len(argv) > 4 else 0
    if limit > 0:
        data_dir = write_subset(data_dir, os.path.join(root, "data"), limit, max(1, limit // 6))
    digest = run(data_dir, root, int(workers))
    with open(digest_path, "w") as f:
        json.dump(digest, f, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
