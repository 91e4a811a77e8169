"""vlp config show lists every field with its type, value, default and meaning; vlp config
new writes a commented config that loads."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from vlp.config import load_config
from vlp.train.cli import main
from vlp.train.config import PretrainConfig
from vlp.train.config_help import FAMILIES, SECTIONS, fields_of


def _all_keys() -> set[str]:
    return {f"{section}.{f.name}" for section, cls in SECTIONS.items()
            for f in dataclasses.fields(cls)}


def test_every_field_has_a_meaning() -> None:
    infos = [i for section in SECTIONS for i in fields_of(section)]
    assert {i.key for i in infos} == _all_keys()
    assert [i.key for i in infos if not i.meaning.strip()] == []


def test_show_lists_every_field_with_value_and_default(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "show", "--kind", "finetune", "train.lr=5e-4", "task.name=ve"]) == 0
    lines = capsys.readouterr().out.splitlines()
    shown = {line.split()[0]: line for line in lines}
    assert set(shown) == _all_keys() - {f"objectives.{f.name}" for f in
                                        dataclasses.fields(SECTIONS["objectives"])}
    assert "0.0005 (default 0.0001)" in shown["train.lr"]
    assert "peak learning rate" in shown["train.lr"]
    assert "'ve' (default 'vqa')" in shown["task.name"]
    assert "fp32 | bf16 | fp16" in shown["train.precision"]
    assert main(["config", "show"]) == 0  # pre-training: objectives, no task
    keys = {line.split()[0] for line in capsys.readouterr().out.splitlines()}
    assert "objectives.mix" in keys and "task.name" not in keys


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_new_configs_load_and_say_what_each_field_means(
        family: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "new", family]) == 0
    text = capsys.readouterr().out
    path = tmp_path / f"{family}.yaml"
    path.write_text(text, encoding="utf-8")
    cfg = load_config(PretrainConfig, path)
    assert cfg.train.out == f"runs/{family}"
    assert all("#" in line for line in text.splitlines()
               if line.startswith("  ") and "weights" not in line)
    assert cfg.objectives.weights == FAMILIES[family]["objectives"]["weights"]


def test_unknown_family_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["config", "new", "clip"])
    assert "invalid choice: 'clip'" in capsys.readouterr().err
