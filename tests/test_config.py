"""Typed configs: YAML + overrides into dataclasses; unknown keys and bad types name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

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


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_shipped_config_loads(path: Path) -> None:
    from vlp.train.config import FinetuneConfig

    cls = FinetuneConfig if "task" in yaml.safe_load(path.read_text()) else PretrainConfig
    assert load_config(cls, path) is not None


def test_no_config_at_all_gives_the_defaults() -> None:
    from vlp.train.config import FinetuneConfig

    assert load_config(PretrainConfig, None) == PretrainConfig()
    assert load_config(FinetuneConfig, None, ["train.steps=0"]).train.steps == 0


def test_range_error_names_file_key_and_range(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("train:\n  lr: -0.1\n")
    with pytest.raises(VlpError) as err:
        load_config(PretrainConfig, path)
    assert str(err.value) == (f"{path}: field 'train.lr': expected a finite number in (0, 1], "
                              "got -0.1")


def test_override_errors_name_overrides_not_the_file(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("train:\n  steps: 30\n")
    with pytest.raises(VlpError) as err:
        load_config(PretrainConfig, path, ["train.warmup_steps=100"])
    assert str(err.value) == ("overrides: field 'train.warmup_steps': 100 is above "
                              "train.steps: 30 (the warm-up must end by the end of the run)")


def test_warmup_rule_applies_to_a_chosen_warmup_only() -> None:
    # the default warm-up on a short run, and any warm-up with steps 0 (vlp evaluate)
    assert load_config(PretrainConfig, None, ["train.steps=30"]).train.warmup_steps == 100
    load_config(PretrainConfig, None, ["train.steps=0", "train.warmup_steps=100"])
    load_config(PretrainConfig, None, ["train.steps=30", "train.warmup_steps=30"])
    with pytest.raises(VlpError, match="'train.warmup_steps': 31 is above"):
        load_config(PretrainConfig, None, ["train.steps=30", "train.warmup_steps=31"])


def test_checks_run_on_direct_construction_and_replace() -> None:
    import dataclasses

    from vlp.config import FieldError
    from vlp.models.config import ModelConfig
    from vlp.train.config import DataConfig

    with pytest.raises(FieldError, match="field 'model.num_heads': 3 heads do not divide"):
        ModelConfig(num_heads=3)
    with pytest.raises(FieldError, match="field 'data.batch_size'"):
        dataclasses.replace(DataConfig(), batch_size=0)
    # sizes at 0 are filled from the data later
    filled = dataclasses.replace(ModelConfig(), vocab_size=100, region_feature_dim=2048)
    assert filled.vocab_size == 100


def test_data_require_names_an_empty_path() -> None:
    from vlp.train.config import DataConfig

    with pytest.raises(VlpError) as err:
        DataConfig().require("vocab")
    assert str(err.value).startswith("data.vocab: empty; set it to a WordPiece vocab.txt")
    assert DataConfig(world="w").resolved().require("vocab") == "w/vocab.txt"
