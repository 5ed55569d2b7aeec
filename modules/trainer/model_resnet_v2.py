"""Pre-activation ResNet v2 backbones and linear heads, exactly as docs/original_s4l.md §3.

* `resnet50v2`: bottleneck units (3, 4, 6, 3), base width 16 * filters_factor (ff=4: vanilla
  ResNet-50 v2, ff=16: the 4x wider MOAM network). Root: zero-pad 3, 7x7/2 conv (VALID, no
  bias, no BN/ReLU), zero-pad 1, 3x3/2 max-pool over the *zero* padding.
* `resnet_small_v2`: the same units for 32x32 CPU runs: (2, 2, 2) units, base width
  4 * filters_factor, a 3x3/1 root conv and no max-pool.
* `resnet_cifar_v2`: the CIFAR pre-activation ResNet of He et al. (2016, "Identity Mappings"):
  basic units (two 3x3 convs), three stages of (depth - 2) / 6 units with widths w, 2w, 4w
  (w = 4 * filters_factor: ff 4 and depth 20 is ResNet-20 of width 16, 0.27 M parameters),
  a 3x3/1 root conv, no max-pool. The small-image recipe's backbone.

Explicit symmetric zero padding + VALID everywhere: Keras `padding="same"` with stride 2 pads
asymmetrically and would shift features (spec section 10.3). Weight decay is `l2(wd / 2)` on
every conv and head kernel (TF1's l2_regularizer is wd * sum(w^2) / 2), none on biases or BN.
"""

from __future__ import annotations

import dataclasses

import tf_keras as keras
from tf_keras import layers


@dataclasses.dataclass(frozen=True)
class _Arch:
    units: tuple[int, ...]
    strides: tuple[int, ...]
    base_per_ff: int
    root_kernel: int
    root_stride: int
    max_pool: bool
    basic: bool = False  # two 3x3 convs per unit instead of the 1x1-3x3-1x1 bottleneck


_ARCHS = {
    "resnet50v2": _Arch((3, 4, 6, 3), (1, 2, 2, 2), 16, 7, 2, True),
    "resnet_small_v2": _Arch((2, 2, 2), (1, 2, 2), 4, 3, 1, False),
    "resnet_cifar_v2": _Arch((3, 3, 3), (1, 2, 2), 4, 3, 1, False, basic=True),
}


def cifar_units(depth: int) -> int:
    """Units per stage of a CIFAR ResNet of `depth` layers (6n + 2: 20, 32, 44, 56, 110)."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"resnet_cifar_v2 depth must be 6n + 2 (20, 32, 44, ...), got {depth}")
    return (depth - 2) // 6


class _Builder:
    def __init__(self, weight_decay: float, bn_momentum: float, bn_epsilon: float,
                 kernel_init: str):
        self._reg = keras.regularizers.l2(weight_decay / 2.0) if weight_decay else None
        self._kernel_init = kernel_init
        self._bn_momentum = bn_momentum
        self._bn_epsilon = bn_epsilon

    def conv(self, x, filters: int, kernel: int, stride: int, name: str):
        if kernel > 1:
            x = layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
        return layers.Conv2D(filters, kernel, strides=stride, padding="valid", use_bias=False,
                             kernel_initializer=self._kernel_init,
                             kernel_regularizer=self._reg, name=name)(x)

    def bn_relu(self, x, name: str):
        x = layers.BatchNormalization(momentum=self._bn_momentum, epsilon=self._bn_epsilon,
                                      name=f"{name}_bn")(x)
        return layers.ReLU(name=f"{name}_relu")(x)

    def preact_and_shortcut(self, x, filters: int, stride: int, name: str):
        """(BN-ReLU of x, the shortcut): identity, or a 1x1 projection of the *pre-activated*
        input without BN where the shape changes (docs/original_s4l.md §3.1)."""
        preact = self.bn_relu(x, f"{name}_preact")
        if stride > 1 or x.shape[-1] != filters:
            return preact, self.conv(preact, filters, 1, stride, f"{name}_proj")
        return preact, x

    def unit(self, x, filters: int, stride: int, name: str):
        """Bottleneck v2 unit; the stride sits in the 3x3 conv (docs/original_s4l.md §3.1)."""
        preact, shortcut = self.preact_and_shortcut(x, filters, stride, name)
        mid = filters // 4
        r = self.conv(preact, mid, 1, 1, f"{name}_conv1")
        r = self.bn_relu(r, f"{name}_conv1")
        r = self.conv(r, mid, 3, stride, f"{name}_conv2")
        r = self.bn_relu(r, f"{name}_conv2")
        r = self.conv(r, filters, 1, 1, f"{name}_conv3")
        return layers.Add(name=f"{name}_add")([r, shortcut])

    def basic_unit(self, x, filters: int, stride: int, name: str):
        """Basic v2 unit: BN-ReLU-conv3x3(stride)-BN-ReLU-conv3x3, shortcut as above."""
        preact, shortcut = self.preact_and_shortcut(x, filters, stride, name)
        r = self.conv(preact, filters, 3, stride, f"{name}_conv1")
        r = self.bn_relu(r, f"{name}_conv1")
        r = self.conv(r, filters, 3, 1, f"{name}_conv2")
        return layers.Add(name=f"{name}_add")([r, shortcut])


def build_backbone(architecture: str = "resnet50v2", filters_factor: int = 4,
                   weight_decay: float = 1e-4, bn_momentum: float = 0.99,
                   bn_epsilon: float = 1e-3, image_size: int | None = None,
                   depth: int = 20, kernel_init: str = "glorot_uniform") -> keras.Model:
    """Builds the backbone as a functional model: images [N, H, W, 3] in [-1, 1] -> endpoints.

    Returns:
      A model whose output is a dict with `after_root`, `block1`..`blockK` (feature maps) and
      `pre_logits` ([N, C], the representation after the final BN, ReLU and global pool).
      `depth` applies to `resnet_cifar_v2` only; `kernel_init` initialises every
      convolution (a Keras initializer name).
    """
    if architecture not in _ARCHS:
        raise ValueError(f"unknown architecture {architecture!r}; choose one of {list(_ARCHS)}")
    arch = _ARCHS[architecture]
    if arch.basic:
        arch = dataclasses.replace(arch, units=(cifar_units(depth),) * len(arch.units))
    build = _Builder(weight_decay, bn_momentum, bn_epsilon, kernel_init)
    base = arch.base_per_ff * filters_factor
    images = keras.Input([image_size, image_size, 3], name="image")
    x = build.conv(images, base, arch.root_kernel, arch.root_stride, "root_conv")
    if arch.max_pool:
        # Max-pool over zero padding, as the original (the conv output is pre-BN, can be < 0).
        x = layers.ZeroPadding2D(1, name="root_pool_pad")(x)
        x = layers.MaxPool2D(3, strides=2, padding="valid", name="root_pool")(x)
    endpoints = {"after_root": x}
    for stage, (units, stride) in enumerate(zip(arch.units, arch.strides, strict=True), 1):
        # Bottleneck units widen 4x at their last 1x1 conv; basic units keep the width.
        filters = (1 if arch.basic else 4) * base * 2 ** (stage - 1)
        make_unit = build.basic_unit if arch.basic else build.unit
        for unit in range(1, units + 1):
            x = make_unit(x, filters, stride if unit == 1 else 1, f"block{stage}_unit{unit}")
        endpoints[f"block{stage}"] = x
    x = build.bn_relu(x, "final")
    endpoints["pre_logits"] = layers.GlobalAveragePooling2D(name="pre_logits")(x)
    return keras.Model(images, endpoints, name=f"{architecture}_ff{filters_factor}")


def build_head(units: int, name: str, weight_decay: float) -> layers.Dense:
    """A linear head on pre_logits (the original's 1x1 conv with bias on [N, 1, 1, C]).

    Always float32, so logits and losses keep full precision under mixed_bfloat16.
    """
    reg = keras.regularizers.l2(weight_decay / 2.0) if weight_decay else None
    return layers.Dense(units, kernel_regularizer=reg, name=name, dtype="float32")
