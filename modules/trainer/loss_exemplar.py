"""S4L-Exemplar (docs/original_s4l.md §4.3): batch-hard triplet loss over inception patches.

Each image arrives as P = 8 independently augmented patches ([B, P, S, S, 3]); the train step
flattens them image-major, so rows i * P .. i * P + P - 1 are the patches of image i. The
classifier trains on every patch with the image's label; the triplet loss is computed on each
stream separately and mixed 0.5/0.5 (triplet_loss_unsup = triplet_loss_sup = 1).

Identity labels: the original passes its helper's two counts in swapped order, so row i gets
identity i // n_images instead of i // P (spec section 10.1 item 1). We fix it by default
(`exemplar_identity="source_image"`: identity = source image, the code's stated intent) and
keep the original behaviour as `"original_swapped"`; the choice is in the experiment record.
Mining runs over the replica's whole stream, or within groups of `exemplar_mining_images`
consecutive images of it: the original mined within each TPU core's batch (16 images on its
v3-32), which the ImageNet preset fixes so that the result does not depend on the topology.
With `exemplar_classify_crops=False` (not in the original) each image's first patch is cut
without the inception crop and the classifier trains on it alone (a `label_weight`, as
S4L-Rotation's `rotation_classify_turns=False` does), so it sees the images it will serve.
tensorflow-addons' TripletHardLoss is not used: the package is end-of-life and not in
this stack, and it has no soft-margin batch-hard variant with the original's distance clamp.
"""

from __future__ import annotations

import tensorflow as tf

from modules.trainer import loss_utils
from modules.trainer.experiment import Experiment
from modules.trainer.method_spec import LossSpec
from modules.trainer.step_context import StepContext


def flatten_patches(stream: dict[str, tf.Tensor], identity: str,
                    mining_images: int = 0, classify_crops: bool = True,
                    ) -> dict[str, tf.Tensor]:
    """[B, P, S, S, 3] patches -> [B * P, S, S, 3] image-major, labels repeated P times,
    plus `identity` labels for the triplet loss and, with `mining_images`, `mining_group`s
    of that many source images (without: the whole stream is one group). Without
    `classify_crops`, a `label_weight` of P on each image's first patch and 0 on the rest:
    the supervised term is then the mean cross-entropy of the first patches."""
    images = stream["image"]
    shape = tf.shape(images)
    num_images, patches = shape[0], shape[1]
    out = {"image": tf.reshape(images, tf.concat([[-1], shape[2:]], axis=0)),
           "identity": identity_labels(num_images, patches, identity)}
    if mining_images:
        out["mining_group"] = identity_labels(num_images, patches) // mining_images
    if "label" in stream:
        out["label"] = tf.repeat(stream["label"], patches)
        if not classify_crops:
            first = tf.one_hot(0, patches, on_value=tf.cast(patches, tf.float32))
            out["label_weight"] = tf.tile(first, [num_images])
    return out


def identity_labels(num_images: tf.Tensor | int, patches: tf.Tensor | int,
                    identity: str = "source_image") -> tf.Tensor:
    """Identity of each image-major row: [P * B] int32."""
    if identity == "source_image":
        return tf.repeat(tf.range(num_images, dtype=tf.int32), patches)
    # The original's swapped arguments: [0] * B, [1] * B, ... over image-major rows.
    return tf.repeat(tf.range(patches, dtype=tf.int32), num_images)


def pairwise_distances(embeddings: tf.Tensor) -> tf.Tensor:
    """Euclidean distances [N, N] via |a|^2 + |b|^2 - 2ab, clamped at 1e-12 before the root.

    The original builds an [N, N, D] difference tensor (67 GB at N = 4,096, D = 1,000);
    this form needs only [N, N] (spec section 10.3).
    """
    squared = tf.reduce_sum(tf.square(embeddings), axis=1)
    gram = tf.matmul(embeddings, embeddings, transpose_b=True)
    d2 = squared[:, None] + squared[None, :] - 2.0 * gram
    # A row's distance to itself is 0 exactly; the formula leaves float32 cancellation noise
    # there (up to ~1e-3 after the root for rows of norm ~2, and it varies with the matmul
    # kernel's summation order).
    d2 = tf.linalg.set_diag(d2, tf.zeros_like(squared))
    return tf.sqrt(tf.maximum(d2, 1e-12))


def batch_hard_triplet_loss(embeddings: tf.Tensor, identities: tf.Tensor,
                            groups: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-anchor soft-margin batch-hard triplet loss (Hermans et al. 2017), and whether each
    anchor is ordered: two [N] tensors.

    Embeddings are L2-normalised per row; for each anchor, the farthest row of the same
    identity (itself excluded), d_pos, and the nearest row of another identity, d_neg, give
    softplus(d_pos - d_neg) (ln 2 where the two are equal); ordered = d_pos < d_neg (float).
    With `groups` ([N] ints), negatives are mined only among rows of the anchor's group.
    """
    embeddings = tf.math.l2_normalize(tf.cast(embeddings, tf.float32), axis=1)
    distances = pairwise_distances(embeddings)
    same = tf.equal(identities[:, None], identities[None, :])
    not_self = tf.logical_not(tf.eye(tf.shape(identities)[0], dtype=tf.bool))
    positives = tf.logical_and(same, not_self)
    hardest_positive = tf.reduce_max(tf.where(positives, distances, 0.0), axis=1)
    not_negative = same
    if groups is not None:
        not_negative = tf.logical_or(same, tf.not_equal(groups[:, None], groups[None, :]))
    far = tf.stop_gradient(tf.reduce_max(distances))
    hardest_negative = tf.reduce_min(tf.where(not_negative, far, distances), axis=1)
    return (tf.nn.softplus(hardest_positive - hardest_negative),
            tf.cast(hardest_positive < hardest_negative, tf.float32))


def term(outputs: dict[str, tf.Tensor], batch: dict, step: StepContext) -> tf.Tensor:
    """Triplet losses of both streams, mixed 0.5/0.5: per-example [N].

    Logs `exemplar_ordered_rate`: the share of anchors (both streams) whose hardest patch of
    the same image is nearer than their nearest patch of another image. Low, with the
    loss near ln 2, the term does not tell the images apart and brings little signal.
    """
    streams = [("embeddings_sup", "labelled")]
    if "embeddings_unsup" in outputs:
        streams.append(("embeddings_unsup", "unlabelled"))
    losses, ordered = [], []
    for head, stream in streams:
        loss, is_ordered = batch_hard_triplet_loss(outputs[head], batch[stream]["identity"],
                                                   batch[stream].get("mining_group"))
        losses.append(loss)
        ordered.append(is_ordered)
    step.track("exemplar_ordered_rate", tf.reduce_mean(tf.concat(ordered, axis=0)))
    if len(losses) == 1:
        return losses[0]
    return loss_utils.mean_of_halves(losses[1], losses[0])


def prepare(batch: dict, exp: Experiment) -> dict:
    """Flattens the P patches of every image of both streams (image-major)."""
    return {name: flatten_patches(stream, exp.exemplar_identity, exp.exemplar_mining_images,
                                  exp.exemplar_classify_crops)
            for name, stream in batch.items()}


SPEC = LossSpec(name="exemplar", term=term, prepare=prepare,
                heads=lambda exp: {"embeddings": exp.triplet_embed_dim},
                views=lambda exp: exp.exemplar_patches,
                train_patches=lambda exp: exp.exemplar_patches,
                diagnostics=("exemplar_ordered_rate",))
