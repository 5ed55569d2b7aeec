"""VAT (docs/original_s4l.md §4.4; MOAM step 1, §4.5): virtual adversarial training.

Target set X: with `apply_vat_to_labelled`, `[sup ; unsup]` (labelled first, as the original),
otherwise the unlabelled images only (MOAM: the rotated unlabelled images). Z = their clean
logits from the shared forward pass.

1. d ~ N(0, I); per power iteration: d <- xi d / |d|, g = grad_d mean KL(f(X + d) || Z),
   d <- stop_gradient(g). 2. r_adv = eps d / |d| (TF l2_normalize: 1e-12 on the squared norm).
3. L_vat = KL(f(X + r_adv) || stop_gradient(Z)) per example.

The *perturbed* prediction is KL's first argument, the reverse of Miyato et al.; reproduced
as written (spec section 10.1 item 6). Both perturbed passes run BN in training mode on the
perturbed batch alone, with the moving statistics frozen (the original's momentum 1.0):
`frozen_batch_norm` sets every BN layer's momentum to 1 while those passes are traced. The mean
per-example |r_adv| is logged as `vat_r_adv_norm`. With xi = 1e-6 the power step's gradient is
tiny (|g| ~ 4e-9 on Fashion-MNIST), so the original's normalisation, whose 1e-12 floor on the
squared norm divides by 1e-6 rather than |g|, leaves |r_adv| far below eps (section 10.1
item 7). The direction itself is sound (measured: KL at eps along it 2.0, along a random
direction 0.03), so by default (`vat_exact_eps`) g is first divided by its per-example
max |g|, as Miyato et al.'s code does, and r_adv has norm eps exactly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import tensorflow as tf
import tf_keras as keras

from modules.trainer import loss_utils
from modules.trainer.experiment import Experiment
from modules.trainer.method_spec import LossSpec
from modules.trainer.step_context import StepContext

_IMAGE_AXES = [1, 2, 3]


@contextlib.contextmanager
def frozen_batch_norm(model: keras.layers.Layer) -> Iterator[None]:
    """Within the block, BN layers of `model` normalise with batch statistics (training mode)
    but leave their moving mean and variance unchanged (momentum 1.0)."""
    layers = [m for m in model.submodules if isinstance(m, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 1.0
    try:
        yield
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum


def target_set(outputs: dict[str, tf.Tensor], batch: dict,
               exp: Experiment) -> tuple[tf.Tensor, tf.Tensor]:
    """(images X, clean class logits Z) that VAT and EntMin cover."""
    has_unsup = "classes_unsup" in outputs
    if exp.apply_vat_to_labelled and has_unsup:
        return (tf.concat([batch["labelled"]["image"], batch["unlabelled"]["image"]], axis=0),
                tf.concat([outputs["classes_sup"], outputs["classes_unsup"]], axis=0))
    if exp.apply_vat_to_labelled:
        return batch["labelled"]["image"], outputs["classes_sup"]
    return batch["unlabelled"]["image"], outputs["classes_unsup"]


def adversarial_perturbation(classify: Callable[[tf.Tensor], tf.Tensor], images: tf.Tensor,
                             clean_logits: tf.Tensor, eps: float, xi: float, iterations: int,
                             seed: tf.Tensor, exact_eps: bool = True) -> tf.Tensor:
    """r_adv [N, H, W, C] by the power method. Each example's perturbation has L2 norm eps;
    with `exact_eps=False` (the original) it is shorter where the gradient's norm is < 1e-6."""
    clean_logits = tf.stop_gradient(clean_logits)
    d = tf.random.stateless_normal(tf.shape(images), seed, dtype=images.dtype)
    for _ in range(iterations):
        d = xi * tf.math.l2_normalize(d, axis=_IMAGE_AXES)
        with tf.GradientTape() as tape:
            tape.watch(d)
            kl = tf.reduce_mean(loss_utils.kl_divergence(classify(images + d), clean_logits))
        d = tf.stop_gradient(tape.gradient(kl, d))
    if exact_eps:
        # A scale-free direction first: the 1e-30 floor only guards an all-zero gradient.
        d = d / (tf.reduce_max(tf.abs(d), axis=_IMAGE_AXES, keepdims=True) + 1e-30)
    return eps * tf.math.l2_normalize(d, axis=_IMAGE_AXES)


def term(outputs: dict[str, tf.Tensor], batch: dict, step: StepContext) -> tf.Tensor:
    """Per-example VAT loss over the target set: [N_X]."""
    exp, model = step.exp, step.model
    images, clean_logits = target_set(outputs, batch, exp)
    clean_logits = tf.stop_gradient(clean_logits)

    def classify(x: tf.Tensor) -> tf.Tensor:
        with frozen_batch_norm(model):
            return model.classify(x, training=True)

    # The power step needs gradients with respect to d only: keep it off the step's tape.
    pause = step.tape.stop_recording() if step.tape is not None else contextlib.nullcontext()
    with pause:
        r_adv = adversarial_perturbation(classify, images, clean_logits, exp.vat_eps,
                                         exp.vat_xi, exp.vat_power_iters, step.seed,
                                         exact_eps=exp.vat_exact_eps)
    step.track("vat_r_adv_norm", tf.reduce_mean(tf.norm(
        tf.reshape(r_adv, [tf.shape(r_adv)[0], -1]), axis=1)))
    return loss_utils.kl_divergence(classify(images + r_adv), clean_logits)


def extra_passes(exp: Experiment) -> float:
    """Perturbed images per labelled image and view: a forward and a backward pass per power
    iteration for every image VAT targets (the unlabelled ones, and the labelled ones where
    apply_vat_to_labelled)."""
    targets = exp.unsup_batch_mult + (1 if exp.apply_vat_to_labelled else 0)
    return 2 * targets * exp.vat_power_iters


SPEC = LossSpec(name="vat", term=term, extra_passes=extra_passes,
                diagnostics=("vat_r_adv_norm",), exact_float32_matmuls=True)
