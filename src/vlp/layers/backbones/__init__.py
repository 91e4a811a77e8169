"""CNN backbones over whole images, in plain torch: pixels → a feature map.

A backbone is an :class:`nn.Module` subclass of :class:`Backbone`: ``forward`` maps
normalised pixels (B, 3, H, W) to a feature map (B, C, ⌈H / s⌉, ⌈W / s⌉) with
``C = out_channels`` and ``s = stride``. Backbones with an ImageNet classifier also give
its logits from pooled features (:meth:`Backbone.classify`), which region extraction
turns into each region's class distribution.

Architectures are registered by name (:func:`register_backbone`); ``model.backbone``
picks one. Weights are loaded from local files by :mod:`vlp.convert` (the layers only
define shapes), so building one never reads a file.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from vlp.errors import VlpError


class Backbone(nn.Module):
    """Base of CNN backbones (see the module docstring).

    Attributes:
        out_channels: channels of the feature map ``forward`` returns.
        stride: how many pixels one cell of the feature map spans.
        num_classes: classes of :meth:`classify` (0 — the backbone has no classifier).
        class_names: what each class is called (empty when unknown).
        pixel_mean: per-channel mean its weights expect subtracted from pixels in [0, 1]
            (ImageNet's unless a subclass was trained otherwise).
        pixel_std: per-channel standard deviation pixels are divided by.
    """

    out_channels: int
    stride: int
    num_classes: int = 0
    class_names: tuple[str, ...] = ()
    pixel_mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    pixel_std: tuple[float, ...] = (0.229, 0.224, 0.225)

    def forward(self, pixels: Tensor) -> Tensor:  # pragma: no cover - abstract
        """(B, 3, H, W) normalised pixels → (B, C, H', W') features."""
        raise NotImplementedError

    def classify(self, pooled: Tensor) -> Tensor:
        """(N, C) features pooled over a region of the map → (N, num_classes) logits."""
        raise VlpError(f"backbone {type(self).__name__} has no classifier")


BACKBONES: dict[str, Callable[[], Backbone]] = {}


def register_backbone(name: str) -> Callable[[Callable[[], Backbone]], Callable[[], Backbone]]:
    """Register a backbone factory (no arguments, random weights) under ``name``."""
    def add(factory: Callable[[], Backbone]) -> Callable[[], Backbone]:
        if name in BACKBONES:
            raise ValueError(f"backbone '{name}' is already registered")
        BACKBONES[name] = factory
        return factory
    return add


def build_backbone(name: str) -> Backbone:
    """A backbone ``name`` with random weights.

    Raises:
        VlpError: no backbone of that name is registered.
    """
    if name not in BACKBONES:
        raise VlpError(f"model.backbone: unknown backbone '{name}' "
                       f"(known: {', '.join(sorted(BACKBONES))})")
    return BACKBONES[name]()


class ConvNet(Backbone):
    """A small plain CNN trained from scratch (four 3×3 conv–BatchNorm–ReLU stages, each
    halving the resolution): stride 16, 256 channels. For small images and quick runs
    where an ImageNet backbone is more than the data needs."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 256)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for width in widths:
            layers += [nn.Conv2d(channels, width, 3, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            channels = width
        self.body = nn.Sequential(*layers)
        self.out_channels = channels
        self.stride = 2 ** len(widths)

    def forward(self, pixels: Tensor) -> Tensor:
        """(B, 3, H, W) → (B, 256, ⌈H/16⌉, ⌈W/16⌉)."""
        out: Tensor = self.body(pixels)
        return out


register_backbone("convnet")(ConvNet)

__all__ = ["BACKBONES", "Backbone", "ConvNet", "build_backbone", "register_backbone"]

# the architectures register themselves on import (explicitly, never by scanning)
from vlp.layers.backbones import efficientnet, resnet  # noqa: E402, F401
