"""Training on pseudo-labels (docs/original_s4l.md §7.2) and warm starts (MOAM step 3)."""

import os

import numpy as np
import pytest
import tensorflow as tf

from conftest import class_image, encode
from modules import features
from modules.trainer import augment, data, experiment, export, training


def _example(name, label, logits=None):
    feature = {
        features.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[encode(class_image(label, 0), "PNG")])),
        features.FILENAME_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[name.encode()])),
        features.LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
    }
    if logits is not None:
        feature[features.PSEUDO_LOGITS_KEY] = tf.train.Feature(
            float_list=tf.train.FloatList(value=logits))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _write(path, records):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path, tf.io.TFRecordOptions(compression_type="GZIP")) as w:
        for record in records:
            w.write(record)


def test_labels_are_true_where_labelled_and_pseudo_elsewhere(tmp_path):
    # Labelled: a (true 1), b (true 2). Unlabelled holds every image with a *wrong* stored
    # label (9) to prove only the labelled split's labels and the logits are used.
    _write(str(tmp_path / "Split-labelled" / "l.gz"), [_example("a", 1), _example("b", 2)])
    pseudo = {"a": 3, "b": 3, "c": 0, "d": 2}
    _write(str(tmp_path / "Split-unlabelled" / "u.gz"), [
        _example(name, 9, list(np.eye(4)[label] * 5)) for name, label in pseudo.items()])
    exp = experiment.for_dataset("synthetic").replace(
        num_classes=4, batch_size=4, cache_labelled=True, shuffle_buffer=1,
        pseudo_labels_from="supervised", inception_crop=False, flip_lr=False)
    dataset = data.pseudo_label_dataset(
        [str(tmp_path / "Split-labelled" / "*"), str(tmp_path / "Split-unlabelled" / "*")], exp)
    batch = next(iter(dataset))
    assert set(batch) == {"labelled"}
    assert sorted(batch["labelled"]["label"].numpy().tolist()) == [0, 1, 2, 2]
    assert data.count_examples(str(tmp_path / "Split-unlabelled" / "*"), "unlabelled") == 4


def test_warm_start_loads_the_saved_weights(tmp_path):
    exp = experiment.for_dataset("synthetic").replace(num_labelled_examples=16, lr=1e-12,
                                                      schedule_epochs=(0, 1))
    source = training.build_model(exp)
    rng = np.random.default_rng(0)
    batch = {"labelled": {"image": rng.uniform(-1, 1, (16, 32, 32, 3)).astype(np.float32),
                          "label": np.zeros(16, np.int32)}}
    for _ in range(3):  # the source's optimizer has a step count and momentum to leave behind
        source.train_step(batch)
    prefix = export.save_weights(source, str(tmp_path / "model" / "Format-Serving"))
    assert prefix == export.weights_prefix(str(tmp_path / "model" / "Format-Serving"))
    batches = tf.data.Dataset.from_tensors(batch).repeat()
    model = training.fit(exp, batches, None, str(tmp_path / "logs"), str(tmp_path / "backup"),
                         tf.distribute.get_strategy(), init_weights=prefix)
    # One step at LR 1e-12: the kernels and BN statistics are the loaded ones.
    for got, want in zip(model.trainable_variables, source.trainable_variables, strict=True):
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-6)
    moving = [w for w in source.non_trainable_weights if "moving_mean" in w.name]
    assert moving and not np.allclose(moving[0].numpy(), 0.0)
    loaded = [w for w in model.non_trainable_weights if "moving_mean" in w.name]
    np.testing.assert_allclose(loaded[0].numpy(), moving[0].numpy(), rtol=0.2, atol=1e-3)
    # The optimizer starts afresh: one step of this stage's schedule, not 3 + 1.
    assert int(model.optimizer.iterations) == 1
    fresh = training.build_model(exp)
    assert not np.allclose(fresh.trainable_variables[0].numpy(),
                           source.trainable_variables[0].numpy())


@pytest.mark.parametrize("labeller", ["supervised", ""])
def test_a_strong_student_trains_on_each_image_s_strong_view(tmp_path, labeller):
    # labelled_augment="strong" (a noised student): element i's image is FixMatch's strong
    # view of record i with the stream's seed for i, and the labels are unchanged; on
    # pseudo-labels (every training image) and on the labelled split alone.
    records = [_example(name, label, list(np.eye(4)[label] * 5))
               for name, label in {"a": 3, "b": 0, "c": 2, "d": 1}.items()]
    _write(str(tmp_path / "Split-labelled" / "l.gz"), records if not labeller else records[:1])
    _write(str(tmp_path / "Split-unlabelled" / "u.gz"), records)
    patterns = [str(tmp_path / "Split-labelled" / "*"), str(tmp_path / "Split-unlabelled" / "*")]
    weak = experiment.for_dataset("synthetic").replace(
        num_classes=4, batch_size=4, shuffle_buffer=1, pseudo_labels_from=labeller,
        unsup_batch_mult=0.0, labelled_augment="weak")
    strong = weak.replace(labelled_augment="strong")
    strong.validate()
    stream = data.pseudo_label_dataset if labeller else data.train_dataset
    batches = {exp.labelled_augment: next(iter(stream(patterns, exp))) for exp in (weak, strong)}
    assert (batches["weak"]["labelled"]["label"].numpy().tolist()
            == batches["strong"]["labelled"]["label"].numpy().tolist() == [3, 0, 2, 1])
    for i, record in enumerate(records):
        encoded = tf.io.parse_single_example(record, {features.IMAGE_KEY: tf.io.FixedLenFeature(
            [], tf.string)})[features.IMAGE_KEY]
        expected = augment.strong_preprocess(encoded, tf.constant([strong.seed, i], tf.int64),
                                             strong)
        np.testing.assert_allclose(batches["strong"]["labelled"]["image"][i], expected)
    assert not np.allclose(batches["strong"]["labelled"]["image"],
                           batches["weak"]["labelled"]["image"])


def test_labelled_augment_is_checked():
    exp = experiment.for_dataset("synthetic")
    with pytest.raises(ValueError, match="labelled_augment"):
        exp.replace(labelled_augment="noisy").validate()
    with pytest.raises(ValueError, match="labelled_augment"):
        exp.replace(losses={"exemplar": 1.0}, labelled_augment="strong").validate()
