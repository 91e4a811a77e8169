"""CNN backbones: registered by name, feature maps of the stated shape, TensorFlow's SAME
padding, classifiers, gradients to every weight."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vlp.errors import VlpError
from vlp.layers.backbones import BACKBONES, Backbone, build_backbone
from vlp.layers.backbones.efficientnet import EfficientNetLite, SameConv2d, imagenet_class_names
from vlp.layers.backbones.resnet import ResNet, ResNetSpec

TINY = ResNetSpec(depths=(1, 1), hidden_sizes=(8, 16), embedding_size=8, layer_type="basic",
                  num_classes=3)


def _assert_every_weight_learns(backbone: Backbone, pixels: torch.Tensor) -> None:
    backbone.train()
    features = backbone(pixels)
    loss = features.square().mean()
    if backbone.num_classes:
        loss = loss + backbone.classify(features.mean((2, 3))).square().mean()
    loss.backward()
    for name, p in backbone.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_registered_by_name() -> None:
    assert {"convnet", "efficientnet_lite0", "resnet"} <= set(BACKBONES)
    assert isinstance(build_backbone("efficientnet_lite0"), EfficientNetLite)
    resnet = build_backbone("resnet")
    assert isinstance(resnet, ResNet) and resnet.spec == ResNetSpec()  # ResNet-50
    assert (resnet.out_channels, resnet.stride, resnet.num_classes) == (2048, 32, 0)
    assert sum(p.numel() for p in resnet.parameters()) == 23_508_032  # ResNet-50 less its fc
    with pytest.raises(VlpError, match="unknown backbone 'vgg'"):
        build_backbone("vgg")


def test_efficientnet_shapes() -> None:
    torch.manual_seed(0)
    net = build_backbone("efficientnet_lite0").eval()
    assert (net.out_channels, net.stride, net.num_classes) == (1280, 32, 1000)
    assert sum(p.numel() for p in net.parameters()) == 4_652_008  # EfficientNet-lite0's
    with torch.no_grad():
        features = net(torch.randn(2, 3, 70, 100))  # any size: ⌈70/32⌉ × ⌈100/32⌉
        logits = net.classify(features.mean((2, 3)))
    assert features.shape == (2, 1280, 3, 4) and torch.isfinite(features).all()
    assert logits.shape == (2, 1000)


def test_imagenet_class_names() -> None:
    names = imagenet_class_names()
    assert len(names) == 1000 and names[0] == "tench" and names[388] == "giant panda"
    assert names[954] == "banana" and names[999] == "toilet tissue"
    assert build_backbone("efficientnet_lite0").class_names is names


@pytest.mark.parametrize(("size", "kernel", "stride", "pads"), [
    (8, 3, 2, (0, 1)),  # TF puts the odd pixel of padding after the image
    (7, 3, 2, (1, 1)),
    (8, 5, 2, (1, 2)),
    (8, 5, 1, (2, 2)),
])
def test_same_padding_is_tensorflows(size: int, kernel: int, stride: int,
                                     pads: tuple[int, int]) -> None:
    torch.manual_seed(0)
    conv = SameConv2d(2, 3, kernel, stride)
    x = torch.randn(1, 2, size, size)
    want = F.conv2d(F.pad(x, [*pads, *pads]), conv.weight, stride=stride)
    got = conv(x)
    assert got.shape[-1] == -(-size // stride)
    assert torch.allclose(got, want, atol=1e-6)


def test_efficientnet_every_weight_learns() -> None:
    torch.manual_seed(0)
    _assert_every_weight_learns(build_backbone("efficientnet_lite0"), torch.randn(2, 3, 64, 64))


@pytest.mark.parametrize("spec", [
    TINY,
    ResNetSpec(depths=(2, 1), hidden_sizes=(16, 32), embedding_size=8, num_classes=0,
               downsample_in_first_stage=True, downsample_in_bottleneck=True),
])
def test_resnet_shapes_and_gradients(spec: ResNetSpec) -> None:
    torch.manual_seed(0)
    net = ResNet(spec)
    assert net.stride == (16 if spec.downsample_in_first_stage else 8)
    features = net(torch.randn(2, 3, 50, 33))
    assert features.shape == (2, spec.hidden_sizes[-1], -(-50 // net.stride),
                              -(-33 // net.stride))
    _assert_every_weight_learns(net, torch.randn(2, 3, 40, 40))


def test_resnet_without_classifier_refuses_to_classify() -> None:
    net = ResNet(ResNetSpec(depths=(1,), hidden_sizes=(8,), embedding_size=8))
    assert net.num_classes == 0
    with pytest.raises(VlpError, match="no classifier"):
        net.classify(torch.zeros(1, 8))
    assert ResNet(TINY).classify(torch.zeros(4, 16)).shape == (4, 3)


def test_resnet_spec_checks_its_stages() -> None:
    with pytest.raises(ValueError, match="one length"):
        ResNetSpec(depths=(1, 2), hidden_sizes=(8,))
