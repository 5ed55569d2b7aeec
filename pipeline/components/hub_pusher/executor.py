"""HubPusher executor: copies a blessed model's Hub modules to a new numbered version.

Layout under the destination:

    <destination>/<model name>/<version>/classification/     TF2 SavedModel: images -> logits
    <destination>/<model name>/<version>/feature_vector/     TF2 SavedModel: -> pre_logits
    <destination>/<model name>/<version>/model_card.{md,json}
    <destination>/<model name>/<version>/<module>.tar.gz      with tarball=1: TF Hub's
                                                             compressed format (module at root)

Versions are 1, 2, ...: the next integer after the largest integer directory, as TF Hub and
TF Serving number versions, so a re-run never overwrites an earlier publication.

How a version becomes visible only when complete, and only one writer gets each number:

* Local and POSIX file systems: the version is written under a hidden staging name and
  renamed into place (atomic; a rename onto an existing version fails and the push takes
  the next number).
* Object stores (gs://, and any scheme without atomic directory renames): a rename would copy
  object by object, so the push first claims the number by creating `<version>.claim` only
  if it does not exist (a Cloud Storage precondition, `if_generation_match=0`; exclusive
  create elsewhere), writes the version in place and writes `PUSH_COMPLETE` into it last.
  Readers take `published_versions` (versions with the marker, or from before claims
  existed), so a crashed push's half-written version is never "the latest"; numbering counts
  claims too, so it is never reused.
"""

from __future__ import annotations

import datetime
import json
import os
import tarfile
import uuid
from typing import Any

import tensorflow as tf
from absl import logging
from tensorflow.core.protobuf import saved_model_pb2
from tfx import types
from tfx.components.pusher import executor as pusher_executor
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, path_utils

from modules import features
from modules.trainer import export
from pipeline.components.evaluation_metrics import evaluation_metrics
from pipeline.components.hub_pusher import model_card

MODEL_KEY = standard_component_specs.MODEL_KEY
MODEL_BLESSING_KEY = standard_component_specs.MODEL_BLESSING_KEY
MODEL_RUN_KEY = "model_run"
EVALUATION_KEY = "evaluation"
EXAMPLES_KEY = "examples"
PUSHED_MODEL_KEY = standard_component_specs.PUSHED_MODEL_KEY
DESTINATION_KEY = "destination"
MODEL_NAME_KEY = "model_name"
TARBALL_KEY = "tarball"

MODULES = tuple(model_card.MODULE_OUTPUTS)
EXPERIMENT_RECORD = features.RUN_RECORD_FILE
_STAGING_PREFIX = ".staging-"
_RENAME_ATTEMPTS = 5
CLAIM_SUFFIX = ".claim"
COMPLETE_MARKER = "PUSH_COMPLETE"


def renames_atomically(path: str) -> bool:
    """Whether a directory rename under `path` is atomic (local and POSIX file systems)."""
    return "://" not in path or path.startswith("file://")


def create_if_absent(path: str, content: str) -> bool:
    """Creates `path` holding `content` unless it exists, atomically; False if it existed."""
    if path.startswith("gs://"):
        from google.api_core import exceptions
        from google.cloud import storage

        bucket, _, name = path[len("gs://"):].partition("/")
        blob = storage.Client().bucket(bucket).blob(name)
        try:
            blob.upload_from_string(content, if_generation_match=0)
        except exceptions.PreconditionFailed:
            return False
        return True
    if "://" in path and not path.startswith("file://"):
        # No atomic create through tf.io.gfile: check, then write (two writers in the same
        # instant could both succeed; said in docs/pipeline.md).
        if tf.io.gfile.exists(path):
            return False
        with tf.io.gfile.GFile(path, "w") as f:
            f.write(content)
        return True
    try:
        descriptor = os.open(path.removeprefix("file://"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "w") as f:
        f.write(content)
    return True


def _entries(model_dir: str) -> list[str]:
    if not tf.io.gfile.isdir(model_dir):
        return []
    return [entry.rstrip("/") for entry in tf.io.gfile.listdir(model_dir)]


def existing_versions(model_dir: str) -> list[int]:
    """The integer version directories under `model_dir`, ascending (complete or not)."""
    return sorted(int(name) for name in _entries(model_dir)
                  if name.isdigit() and tf.io.gfile.isdir(os.path.join(model_dir, name)))


def claimed_versions(model_dir: str) -> list[int]:
    """Version numbers claimed by object-store pushes (`<version>.claim`), ascending."""
    return sorted(int(name[:-len(CLAIM_SUFFIX)]) for name in _entries(model_dir)
                  if name.endswith(CLAIM_SUFFIX) and name[:-len(CLAIM_SUFFIX)].isdigit())


def published_versions(model_dir: str) -> list[int]:
    """The versions a reader may load: complete ones (an object-store push's marker, or no
    claim: a rename made it, or it predates claims). The latest is the last."""
    claimed = set(claimed_versions(model_dir))
    return [v for v in existing_versions(model_dir) if v not in claimed
            or tf.io.gfile.exists(os.path.join(model_dir, str(v), COMPLETE_MARKER))]


def next_version(model_dir: str) -> int:
    """One more than the largest existing or claimed version, 1 for the first."""
    versions = existing_versions(model_dir) + claimed_versions(model_dir)
    return max(versions) + 1 if versions else 1


def output_shape(saved_model_dir: str) -> list[int | None]:
    """The output shape of a SavedModel's serving_default signature, read from the graph
    proto without loading the variables."""
    with tf.io.gfile.GFile(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as f:
        proto = saved_model_pb2.SavedModel.FromString(f.read())
    signature = proto.meta_graphs[0].signature_def["serving_default"]
    (output,) = signature.outputs.values()
    return [None if d.size < 0 else int(d.size) for d in output.tensor_shape.dim]


def write_tarball(module_dir: str, tar_path: str, extra_files: dict[str, str]) -> None:
    """A .tar.gz with the module's files at its root (TF Hub's compressed module format),
    directories before their files so a streaming extractor can create them first."""
    with tf.io.gfile.GFile(tar_path, "wb") as out, \
            tarfile.open(fileobj=out, mode="w:gz") as tar:
        for directory, subdirs, files in tf.io.gfile.walk(module_dir):
            subdirs.sort()
            relative = os.path.relpath(directory, module_dir)
            if relative != ".":
                info = tarfile.TarInfo(relative)
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            for name in sorted(files):
                path = os.path.join(directory, name)
                info = tarfile.TarInfo(os.path.normpath(os.path.join(relative, name)))
                info.size, info.mode = tf.io.gfile.stat(path).length, 0o644
                with tf.io.gfile.GFile(path, "rb") as src:
                    tar.addfile(info, fileobj=src)
        for name, path in sorted(extra_files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode = tf.io.gfile.stat(path).length, 0o644
            with tf.io.gfile.GFile(path, "rb") as src:
                tar.addfile(info, fileobj=src)


def _read_json(path: str) -> dict[str, Any] | None:
    if not tf.io.gfile.exists(path):
        logging.warning("HubPusher: %s is missing; the model card leaves its facts out", path)
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def _optional(input_dict: dict[str, list[types.Artifact]], key: str) -> types.Artifact | None:
    artifacts = input_dict.get(key) or []
    return artifact_utils.get_single_instance(artifacts) if artifacts else None


class Executor(pusher_executor.Executor):
    """Publishes the Model artifact's `Format-Hub` modules when the model is blessed.

    Subclasses the TFX Pusher executor (as TFX's own BigQuery and Vertex pushers do) for its
    blessing check and the `pushed`, `pushed_destination` and `pushed_version` properties of
    the PushedModel output, which also keeps a copy of the model card.
    """

    def Do(self, input_dict: dict[str, list[types.Artifact]],  # noqa: N802 - TFX API name.
           output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        pushed = artifact_utils.get_single_instance(output_dict[PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(pushed)
            return
        model = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
        source = export.hub_dir(path_utils.serving_model_dir(model.uri))
        for name in MODULES:
            if not tf.io.gfile.exists(os.path.join(source, name, "saved_model.pb")):
                raise FileNotFoundError(f"HubPusher: the model artifact has no {name} module "
                                        f"at {os.path.join(source, name)}")
        model_dir = os.path.join(exec_properties[DESTINATION_KEY],
                                 exec_properties[MODEL_NAME_KEY])
        tf.io.gfile.makedirs(model_dir)
        if renames_atomically(model_dir):
            staging = os.path.join(model_dir, f"{_STAGING_PREFIX}{uuid.uuid4().hex}")
            try:
                version_dir, version = self._publish(
                    input_dict, exec_properties, model, source, model_dir, staging)
            finally:
                if tf.io.gfile.exists(staging):
                    tf.io.gfile.rmtree(staging)
        else:
            version_dir, version = self._publish_in_place(
                input_dict, exec_properties, model, source, model_dir)
        for name in (model_card.CARD_JSON, model_card.CARD_MARKDOWN):
            io_utils.copy_file(os.path.join(version_dir, name), os.path.join(pushed.uri, name),
                               overwrite=True)
        self._MarkPushed(pushed, pushed_destination=version_dir, pushed_version=str(version))
        logging.info("Model pushed as Hub modules to %s.", version_dir)

    def _publish(self, input_dict: dict[str, list[types.Artifact]],
                 exec_properties: dict[str, Any], model: types.Artifact, source: str,
                 model_dir: str, staging: str) -> tuple[str, int]:
        """Writes the version under `staging` and renames it to the next free version."""
        for name in MODULES:
            io_utils.copy_dir(os.path.join(source, name), os.path.join(staging, name))
        card = self._card(input_dict, exec_properties, model, staging)
        version = next_version(model_dir)
        for _ in range(_RENAME_ATTEMPTS):
            version_dir = os.path.join(model_dir, str(version))
            # The card names its own version and directory: rewritten on each attempt.
            self._write_card_and_tarballs(card, version, staging, version_dir, exec_properties)
            try:
                tf.io.gfile.rename(staging, version_dir, overwrite=False)
                return version_dir, version
            except (tf.errors.AlreadyExistsError, tf.errors.FailedPreconditionError):
                # Another push took this version since we listed: take the next one.
                logging.warning("HubPusher: version %d of %s appeared meanwhile", version,
                                model_dir)
                version = max(version + 1, next_version(model_dir))
        raise RuntimeError(f"HubPusher: no free version under {model_dir} after "
                           f"{_RENAME_ATTEMPTS} attempts")

    def _publish_in_place(self, input_dict: dict[str, list[types.Artifact]],
                          exec_properties: dict[str, Any], model: types.Artifact,
                          source: str, model_dir: str) -> tuple[str, int]:
        """Claims the next version, writes it in place, and marks it complete last."""
        version = next_version(model_dir)
        writer = json.dumps({"model": model.uri, "claimed_at": datetime.datetime.now(
            datetime.timezone.utc).isoformat(timespec="seconds")})
        for _ in range(_RENAME_ATTEMPTS):
            if create_if_absent(os.path.join(model_dir, f"{version}{CLAIM_SUFFIX}"), writer):
                break
            logging.warning("HubPusher: version %d of %s is claimed by another push", version,
                            model_dir)
            version = max(version + 1, next_version(model_dir))
        else:
            raise RuntimeError(f"HubPusher: no free version under {model_dir} after "
                               f"{_RENAME_ATTEMPTS} attempts")
        version_dir = os.path.join(model_dir, str(version))
        for name in MODULES:
            io_utils.copy_dir(os.path.join(source, name), os.path.join(version_dir, name))
        card = self._card(input_dict, exec_properties, model, version_dir)
        self._write_card_and_tarballs(card, version, version_dir, version_dir, exec_properties)
        with tf.io.gfile.GFile(os.path.join(version_dir, COMPLETE_MARKER), "w") as f:
            f.write(writer)
        return version_dir, version

    def _card(self, input_dict: dict[str, list[types.Artifact]],
              exec_properties: dict[str, Any], model: types.Artifact,
              staging: str) -> dict[str, Any]:
        """The card's facts; its version is filled in when the version is known."""
        model_run = _optional(input_dict, MODEL_RUN_KEY)
        examples = _optional(input_dict, EXAMPLES_KEY)
        evaluation = _optional(input_dict, EVALUATION_KEY)
        blessing = _optional(input_dict, MODEL_BLESSING_KEY)
        run_record = (_read_json(os.path.join(model_run.uri, EXPERIMENT_RECORD))
                      if model_run else None)
        split_stats = (_read_json(os.path.join(examples.uri, features.SPLIT_STATS_FILE))
                       if examples else None)
        metrics = None
        if evaluation:
            class_names = (split_stats or {}).get("classes")
            metrics = evaluation_metrics(evaluation.uri, class_names)
        baseline = (blessing.get_string_custom_property("baseline_model") or None
                    if blessing else None)
        return model_card.build_card(
            model_name=exec_properties[MODEL_NAME_KEY], version="",
            published_at=datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
            source_model_uri=model.uri,
            module_outputs={name: output_shape(os.path.join(staging, name))
                            for name in MODULES},
            run_record=run_record, split_stats=split_stats, metrics=metrics,
            evaluation_uri=evaluation.uri if evaluation else None,
            baseline_model_uri=baseline)

    def _write_card_and_tarballs(self, card: dict[str, Any], version: int, directory: str,
                                 version_dir: str, exec_properties: dict[str, Any]) -> None:
        """The card of `version` (published at `version_dir`) and, with tarball=1, each
        module's .tar.gz with the card inside, all written into `directory`."""
        self._write_card({**card, "version": str(version)}, directory, version_dir)
        if int(exec_properties.get(TARBALL_KEY) or 0):
            extras = {n: os.path.join(directory, n)
                      for n in (model_card.CARD_JSON, model_card.CARD_MARKDOWN)}
            for name in MODULES:
                write_tarball(os.path.join(directory, name),
                              os.path.join(directory, f"{name}.tar.gz"), extras)

    @staticmethod
    def _write_card(card: dict[str, Any], staging: str, version_dir: str) -> None:
        with tf.io.gfile.GFile(os.path.join(staging, model_card.CARD_JSON), "w") as f:
            f.write(json.dumps(card, indent=1))
        with tf.io.gfile.GFile(os.path.join(staging, model_card.CARD_MARKDOWN), "w") as f:
            f.write(model_card.render_markdown(card, version_dir))
