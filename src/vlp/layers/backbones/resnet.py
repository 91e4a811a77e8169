"""ResNet (He et al., 2016), laid out as Hugging Face's ``ResNetConfig`` describes it.

A 7×7 stride-2 convolution and a 3×3 stride-2 max-pool, then stages of basic blocks (two
3×3 convs; ResNet-18/34) or bottleneck blocks (1×1 reduce to a quarter, 3×3, 1×1 expand;
ResNet-50 and up), each stage but the first halving the resolution in its first block.
Every convolution is followed by BatchNorm (ε 1e-5) and ReLU, except the last of a block,
whose ReLU comes after the residual is added.

The shape is a :class:`ResNetSpec`; :func:`vlp.convert.backbones.resnet_from_config` reads
one from a Hugging Face ``config.json`` and loads the weights. The registered "resnet"
factory builds ResNet-50 with random weights and no classifier.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from torch import Tensor, nn

from vlp.layers.backbones import Backbone, register_backbone


@dataclass(frozen=True)
class ResNetSpec:
    """The shape of a ResNet (the fields of Hugging Face's ``ResNetConfig``).

    Attributes:
        depths: blocks in each stage.
        hidden_sizes: output channels of each stage.
        embedding_size: channels of the stem convolution.
        layer_type: "basic" (two 3×3 convs) or "bottleneck" (1×1, 3×3, 1×1).
        downsample_in_first_stage: the first stage halves the resolution too.
        downsample_in_bottleneck: a bottleneck's stride sits on its first 1×1 conv instead
            of its 3×3 conv.
        num_channels: image channels.
        num_classes: outputs of the classifier on pooled features; 0 — none.
    """

    depths: tuple[int, ...] = (3, 4, 6, 3)
    hidden_sizes: tuple[int, ...] = (256, 512, 1024, 2048)
    embedding_size: int = 64
    layer_type: Literal["basic", "bottleneck"] = "bottleneck"
    downsample_in_first_stage: bool = False
    downsample_in_bottleneck: bool = False
    num_channels: int = 3
    num_classes: int = 0

    def __post_init__(self) -> None:
        if not self.depths or len(self.depths) != len(self.hidden_sizes):
            raise ValueError(f"ResNetSpec: depths {self.depths} and hidden_sizes "
                             f"{self.hidden_sizes} must be non-empty and of one length")


class ConvNorm(nn.Module):
    """k×k convolution (padding k // 2, no bias) → BatchNorm → ReLU (none with ``act=False``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, act: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                              padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU() if act else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) → (B, C_out, ⌈H / s⌉, ⌈W / s⌉)."""
        out: Tensor = self.act(self.bn(self.conv(x)))
        return out


class ResidualBlock(nn.Module):
    """``convs`` plus a shortcut (a strided 1×1 conv and BatchNorm where the shape
    changes), then ReLU.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        stride: 1, or 2 to halve the resolution.
        bottleneck: three convs through ``out_channels // 4`` instead of two 3×3 convs.
        stride_first: in a bottleneck, stride the first 1×1 conv rather than the 3×3.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, bottleneck: bool,
                 stride_first: bool = False) -> None:
        super().__init__()
        if bottleneck:
            mid = out_channels // 4
            self.convs = nn.Sequential(
                ConvNorm(in_channels, mid, 1, stride if stride_first else 1),
                ConvNorm(mid, mid, 3, 1 if stride_first else stride),
                ConvNorm(mid, out_channels, 1, act=False))
        else:
            self.convs = nn.Sequential(ConvNorm(in_channels, out_channels, 3, stride),
                                       ConvNorm(out_channels, out_channels, 3, act=False))
        changes = in_channels != out_channels or stride != 1
        self.shortcut = ConvNorm(in_channels, out_channels, 1, stride, act=False) if changes \
            else None
        self.act = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) → (B, C_out, ⌈H / s⌉, ⌈W / s⌉)."""
        residual = x if self.shortcut is None else self.shortcut(x)
        out: Tensor = self.act(self.convs(x) + residual)
        return out


class ResNet(Backbone):
    """A ResNet of ``spec``: ``forward`` gives the last stage's map (``hidden_sizes[-1]``
    channels, stride 32 — 64 with ``downsample_in_first_stage``), :meth:`classify` a
    linear classifier's logits when ``spec.num_classes`` > 0.

    Args:
        spec: the shape.
        class_names: what each class is called (``id2label``), or empty.
    """

    def __init__(self, spec: ResNetSpec | None = None, class_names: tuple[str, ...] = ()
                 ) -> None:
        super().__init__()
        self.spec = spec = spec or ResNetSpec()
        self.stem = ConvNorm(spec.num_channels, spec.embedding_size, 7, stride=2)
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        strides = [2 if spec.downsample_in_first_stage else 1] + [2] * (len(spec.depths) - 1)
        stages: list[nn.Module] = []
        channels = spec.embedding_size
        for depth, width, stride in zip(spec.depths, spec.hidden_sizes, strides, strict=True):
            stages.append(nn.Sequential(*(
                ResidualBlock(channels if i == 0 else width, width, stride if i == 0 else 1,
                              spec.layer_type == "bottleneck", spec.downsample_in_bottleneck)
                for i in range(depth))))
            channels = width
        self.stages = nn.Sequential(*stages)
        self.classifier = nn.Linear(channels, spec.num_classes) if spec.num_classes else None
        self.out_channels = channels
        self.stride = 4 * math.prod(strides)
        self.num_classes = spec.num_classes
        self.class_names = class_names

    def forward(self, pixels: Tensor) -> Tensor:
        """(B, C, H, W) normalised pixels → (B, hidden_sizes[-1], ⌈H / s⌉, ⌈W / s⌉)."""
        out: Tensor = self.stages(self.pool(self.stem(pixels)))
        return out

    def classify(self, pooled: Tensor) -> Tensor:
        """(N, hidden_sizes[-1]) pooled features → (N, num_classes) logits."""
        if self.classifier is None:
            return super().classify(pooled)
        out: Tensor = self.classifier(pooled)
        return out


@register_backbone("resnet")
def resnet50() -> ResNet:
    """ResNet-50's shape with random weights and no classifier (25.6 M parameters less
    the classifier's 2 M); a Hugging Face directory of another shape is built from its
    ``config.json`` by :func:`vlp.convert.backbones.resnet_from_config`."""
    return ResNet(ResNetSpec())


__all__ = ["ConvNorm", "ResNet", "ResNetSpec", "ResidualBlock", "resnet50"]
