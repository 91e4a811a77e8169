"""Typed configs: YAML + overrides into dataclasses; unknown keys and bad types name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlp.config import dump_config, load_config
from vlp.errors import VlpError
from vlp.train.config import PretrainConfig


def test_yaml_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("model:\n  hidden_size: 64\ntrain:\n  lr: 3e-4\n  steps: 5\n")
    cfg = load_config(PretrainConfig, path, ["train.steps=7", "objectives.mix=sum",
                                             "objectives.weights={mlm: 1, itm: 2}"])
    assert cfg.model.hidden_size == 64
    assert cfg.train.lr == 3e-4 and isinstance(cfg.train.lr, float)
    assert cfg.train.steps == 7
    assert cfg.objectives.mix == "sum"
    assert cfg.objectives.weights == {"mlm": 1.0, "itm": 2.0}
    assert cfg.model.num_layers == 4  # default kept


def test_round_trip(tmp_path: Path) -> None:
    cfg = load_config(PretrainConfig, None, ["model.num_layers=2"])
    path = tmp_path / "dump.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(PretrainConfig, path) == cfg


def test_unknown_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("model:\n  hiden_size: 64\n")
    with pytest.raises(VlpError) as err:
        load_config(PretrainConfig, path)
    msg = str(err.value)
    assert "exp.yaml" in msg and "unknown key 'model.hiden_size'" in msg and "\n" not in msg


def test_unknown_override_is_named() -> None:
    with pytest.raises(VlpError, match="unknown key 'train.learning_rate'"):
        load_config(PretrainConfig, None, ["train.learning_rate=1"])


def test_wrong_type_and_literal() -> None:
    with pytest.raises(VlpError, match="field 'train.steps': expected int"):
        load_config(PretrainConfig, None, ["train.steps=many"])
    with pytest.raises(VlpError, match="field 'train.precision': expected one of"):
        load_config(PretrainConfig, None, ["train.precision=fp8"])


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(VlpError, match="config file not found"):
        load_config(PretrainConfig, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [1, 2\n")
    with pytest.raises(VlpError, match="not valid YAML"):
        load_config(PretrainConfig, bad)
