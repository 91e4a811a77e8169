"""Bad experiment configs: every field of every config section, fed values of the wrong type
and values outside its range, and the rules between fields. Each is refused with one line
naming the file (or "overrides") and the full key, as a ``VlpError`` and through the CLI.

The cases are generated from the dataclasses themselves (their fields, types and declared
ranges), so a field added later is fuzzed without a new test.
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import pytest
import yaml
from fuzz_harness import refuse

from vlp.config import MAX_INT, Range, load_config
from vlp.errors import VlpError
from vlp.train.config import FinetuneConfig, PretrainConfig

ROOTS: dict[str, type] = {"pretrain": PretrainConfig, "finetune": FinetuneConfig}


@dataclasses.dataclass(frozen=True)
class Case:
    """One bad config: the root config, the value set at ``key``, and the key the error
    must name (``key`` unless a rule between fields names another)."""

    root: str
    key: str
    value: Any
    names: str = ""
    also: tuple[tuple[str, Any], ...] = ()
    mentions: str = ""

    @property
    def named(self) -> str:
        return self.names or self.key


def _leaves(cls: type, prefix: str = "") -> Iterator[tuple[str, Any, dataclasses.Field[Any]]]:
    """(full key, type, field) of every non-section field under ``cls``, recursively."""
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from _leaves(tp, f"{key}.")  # type: ignore[arg-type]
        else:
            yield key, tp, f


def _kind(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "literal"
    if origin in (list, tuple):
        return "list"
    if origin is dict:
        return "dict"
    if origin in (Union, types.UnionType):
        return "optional"
    return {bool: "bool", int: "int", float: "float", str: "str"}.get(tp, "other")


# values of the wrong type, per kind of field
WRONG_TYPES: dict[str, dict[str, Any]] = {
    "int": {"string": "many", "list": [1, 2], "mapping": {"a": 1}, "null": None,
            "bool": True, "float": 2.5},
    "float": {"string": "fast", "list": [0.1], "mapping": {"a": 0.1}, "null": None,
              "bool": False},
    "str": {"list": ["a", "b"], "mapping": {"a": "b"}, "null": None, "bool": True},
    "bool": {"string": "maybe", "number": 2, "list": [True], "null": None},
    "literal": {"unknown": "no-such-choice", "list": ["x"], "null": None},
    "list": {"scalar": "train", "mapping": {"a": 1}, "null": None},
    "dict": {"list": ["mlm"], "scalar": "mlm", "null": None},
}


def _out_of_range(rng: Range, integral: bool) -> dict[str, Any]:
    """Values just outside each bound, and the non-numbers a range never admits."""
    out: dict[str, Any] = {}
    if rng.ge is not None:
        out["below_min"] = rng.ge - 1 if integral else rng.ge - 0.5
        out["negative"] = -5 if rng.ge >= 0 else None
    if rng.gt is not None:
        out["at_exclusive_min"] = int(rng.gt) if integral else rng.gt
        out["negative"] = -5 if integral else -0.5
    if rng.le is not None:
        out["above_max"] = rng.le + 1 if integral else rng.le + 0.5
        out["huge"] = 1e300
    if rng.lt is not None:
        out["at_exclusive_max"] = rng.lt
        out["huge"] = 1e300
    if integral:
        out["huge"] = 10**30
        out["int32_overflow"] = MAX_INT + 1
    else:
        out.update(nan=math.nan, inf=math.inf, minus_inf=-math.inf)
    return {k: v for k, v in out.items() if v is not None}


def _field_cases() -> Iterator[Any]:
    seen: set[tuple[str, str]] = set()
    for root, cls in ROOTS.items():
        for key, tp, f in _leaves(cls):
            kind = _kind(tp)
            values = dict(WRONG_TYPES.get(kind, {}))
            rng = f.metadata.get("range")
            if rng is not None:
                integral = kind == "int" or (kind == "list" and get_args(tp)[0] is int)
                target = "items" if kind == "list" else ""
                for name, v in _out_of_range(rng, integral).items():
                    values[f"{target}{name}"] = [v, v] if kind == "list" else v
            for name, value in values.items():
                if (key, name) in seen:  # the shared sections: once, under pretrain
                    continue
                seen.add((key, name))
                item = f"{key}[0]" if name.startswith("items") else ""
                yield pytest.param(Case(root, key, value, item), id=f"{key}-{name}")


def _cross_cases() -> Iterator[Any]:
    p, f = "pretrain", "finetune"
    cases = {
        "heads_do_not_divide_width": Case(p, "model.num_heads", 3),
        "width_not_divisible": Case(p, "model.hidden_size", 250, "model.num_heads"),
        "image_width_not_divisible": Case(p, "model.image_hidden_size", 30,
                                          "model.image_num_heads"),
        "image_heads_do_not_divide": Case(p, "model.image_num_heads", 3),
        "pad_id_beyond_vocab": Case(p, "model.pad_id", 10, also=(("model.vocab_size", 5),)),
        "unknown_arch": Case(p, "model.arch", "transformer_xl", mentions="unknown architecture"),
        "patch_larger_than_image": Case(p, "model.patch_size", 64, also=(
            ("model.visual", "patches"), ("model.image_size", 32))),
        "two_stream_without_cross_layers": Case(p, "model.arch", "two_stream",
                                                "model.num_cross_layers"),
        "two_stream_too_few_image_layers": Case(p, "model.num_cross_layers", 2,
                                                "model.num_image_layers",
                                                also=(("model.arch", "two_stream"),)),
        "two_stream_shared_unequal_widths": Case(p, "model.cross_attention", "shared", also=(
            ("model.arch", "two_stream"), ("model.num_cross_layers", 1),
            ("model.num_image_layers", 1), ("model.image_hidden_size", 128))),
        "two_stream_on_patches": Case(p, "model.visual", "patches", "model.arch", also=(
            ("model.arch", "two_stream"),)),
        "text_longer_than_positions": Case(p, "data.max_text_len", 600),
        "positions_shorter_than_text": Case(p, "model.max_positions", 20, "data.max_text_len"),
        "token_budget_below_one_caption": Case(p, "data.token_budget", 10),
        "no_train_splits": Case(p, "data.train_splits", []),
        "empty_train_split": Case(p, "data.train_splits", ["train", ""], "data.train_splits[1]"),
        "empty_eval_split": Case(p, "data.eval_split", ""),
        "warmup_beyond_steps": Case(p, "train.warmup_steps", 100, also=(("train.steps", 30),),
                                    mentions="100 is above train.steps: 30"),
        "warmup_one_beyond_steps": Case(p, "train.warmup_steps", 31,
                                        also=(("train.steps", 30),)),
        "one_beta": Case(p, "train.betas", [0.9]),
        "three_betas": Case(p, "train.betas", [0.9, 0.98, 0.5]),
        "beta_of_one": Case(p, "train.betas", [0.9, 1.0], "train.betas[1]"),
        "beta_nan": Case(p, "train.betas", [math.nan, 0.9], "train.betas[0]"),
        "unknown_device": Case(p, "train.device", "gpu0"),
        "empty_out": Case(p, "train.out", ""),
        "weights_empty": Case(p, "objectives.weights", {}),
        "weights_all_zero": Case(p, "objectives.weights", {"mlm": 0, "itm": 0}),
        "weight_negative": Case(p, "objectives.weights", {"mlm": -1, "itm": 1},
                                "objectives.weights.mlm"),
        "weight_nan": Case(p, "objectives.weights", {"mlm": math.nan}, "objectives.weights.mlm"),
        "weight_inf": Case(p, "objectives.weights", {"itm": math.inf}, "objectives.weights.itm"),
        "weight_not_a_number": Case(p, "objectives.weights", {"itm": "high"},
                                    "objectives.weights.itm"),
        "unknown_objective": Case(p, "objectives.weights", {"mlm": 1, "vqa": 1},
                                  "objectives.weights.vqa", mentions="unknown objective"),
        "empty_task_name": Case(f, "task.name", ""),
        "empty_task_file": Case(f, "task.files", {"questions": ""}, "task.files.questions"),
        "task_file_not_a_string": Case(f, "task.files", {"questions": ["a"]},
                                       "task.files.questions"),
    }
    for name, case in cases.items():
        yield pytest.param(case, id=f"cross-{name}")


def _nested(items: list[tuple[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for key, value in items:
        node = doc
        *sections, last = key.split(".")
        for s in sections:
            node = node.setdefault(s, {})
        node[last] = value
    return doc


def _assert_one_line(err: VlpError, *texts: str) -> str:
    line = str(err)
    assert "\n" not in line and line.strip() == line, line
    for text in texts:
        assert text in line, f"{text!r} not in {line!r}"
    return line


@pytest.mark.parametrize("case", [*_field_cases(), *_cross_cases()])
def test_bad_value_in_a_file_is_one_line(case: Case, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_nested([*case.also, (case.key, case.value)])))
    with pytest.raises(VlpError) as err:
        load_config(ROOTS[case.root], path)
    line = _assert_one_line(err.value, f"'{case.named}'", case.mentions)
    assert line.startswith(f"{path}: ")


@pytest.mark.parametrize("override", [
    "train.lr=-1", "train.lr=nan", "train.lr=inf", "data.batch_size=0", "train.grad_accum=0",
    "model.dropout=1.5", "data.max_regions=0", "train.steps=-5", "objectives.mask_prob=2.0",
    "train.warmup_steps=-10", "model.hidden_size=0", "objectives.weights={mlm: 0}",
])
def test_bad_override_names_overrides(override: str, tmp_path: Path) -> None:
    path = tmp_path / "good.yaml"
    path.write_text("train:\n  steps: 50\n  warmup_steps: 5\n")
    key = override.split("=", 1)[0]
    with pytest.raises(VlpError) as err:
        load_config(PretrainConfig, path, [override])
    line = _assert_one_line(err.value, f"'{key}'")
    assert line.startswith("overrides: "), line


def test_fuzz_covers_every_field() -> None:
    keys = {c.values[0].key for c in _field_cases()}  # type: ignore[union-attr]
    for cls in ROOTS.values():
        assert {key for key, _, _ in _leaves(cls)} <= keys


@pytest.mark.parametrize("overrides", [
    [], ["train.steps=0"], ["train.steps=30"], ["train.steps=0", "train.warmup_steps=500"],
    ["model.vocab_size=0", "model.region_feature_dim=0"], ["data.token_budget=0"],
    ["model.arch=two_stream", "model.num_cross_layers=1", "model.num_image_layers=1",
     "model.image_hidden_size=128", "model.image_num_heads=2"],
], ids=["defaults", "evaluate", "short_run_default_warmup", "evaluate_long_warmup",
        "sizes_from_data", "fixed_batches", "two_stream"])
def test_legal_edges_still_load(overrides: list[str]) -> None:
    load_config(PretrainConfig, None, overrides)
    load_config(FinetuneConfig, None, overrides)


def test_replace_is_checked_too() -> None:
    cfg = load_config(PretrainConfig, None)
    with pytest.raises(VlpError, match="field 'train.lr'"):
        dataclasses.replace(cfg.train, lr=-1.0)
    # the trainer's fill-ins from data stay legal
    dataclasses.replace(cfg.model, vocab_size=30522, region_feature_dim=2048)


# ---- through the CLI: exit 2, one line, nothing written ----------------------------------

BAD_FILES: dict[str, tuple[str | bytes, str]] = {
    "negative_lr": ("train:\n  lr: -0.1\n", "train.lr"),
    "zero_batch": ("data:\n  batch_size: 0\n", "data.batch_size"),
    "warmup_beyond_steps": ("train:\n  steps: 30\n  warmup_steps: 100\n", "train.warmup_steps"),
    "all_weights_zero": ("objectives:\n  weights: {mlm: 0, itm: 0}\n", "objectives.weights"),
    "top_level_list": ("- model\n- train\n", "top level"),
    "top_level_scalar": ("just a string\n", "top level"),
    "section_not_mapping": ("model: 5\n", "model"),
    "not_yaml": ("model: [1, 2\n", "not valid YAML"),
    "not_utf8": (b"model:\n  arch: \xff\xfe\n", "not UTF-8"),
    "unknown_key": ("train:\n  learning_rate: 0.1\n", "train.learning_rate"),
    "python_tag": ('!!python/object/apply:os.system ["touch MARKER"]\n', "not valid YAML"),
    "nested_python_tag": ('train:\n  out: !!python/object/apply:os.system ["touch MARKER"]\n',
                          "not valid YAML"),
}


@pytest.mark.parametrize("name", list(BAD_FILES))
def test_cli_refuses_bad_config_file(name: str, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # MARKER would land here
    text, mention = BAD_FILES[name]
    bad = tmp_path / "bad.yaml"
    if isinstance(text, bytes):
        bad.write_bytes(text)
    else:
        bad.write_text(text)
    out = tmp_path / "out"
    refuse(capsys, ["pretrain", "--config", str(bad), f"train.out={out}"], watch=[bad],
           absent=[out, tmp_path / "MARKER"], mentions=[str(bad), mention])


@pytest.mark.parametrize("argv,mention", [
    (["pretrain", "train.lr=-1"], "overrides: field 'train.lr'"),
    (["pretrain", "train.lr=[1,"], "not valid YAML"),
    (["pretrain", "=5"], "override '=5'"),
    (["pretrain", "train..lr=5"], "dotted key"),
    (["finetune", "vqa", "task.train_limit=-1"], "task.train_limit"),
    (["finetune", "vqa", "data.max_text_len=2"], "data.max_text_len"),
    (["evaluate", "vqa", "--predictions", "p.json", "task.eval_limit=-3"], "task.eval_limit"),
], ids=["override_range", "override_not_yaml", "override_no_key", "override_empty_part",
        "finetune_limit", "finetune_text_len", "evaluate_limit"])
def test_cli_refuses_bad_overrides(argv: list[str], mention: str, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    refuse(capsys, [*argv, f"train.out={out}"], absent=[out], mentions=[mention])


def test_cli_missing_and_directory_config(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    refuse(capsys, ["pretrain", "--config", str(tmp_path / "nope.yaml")],
           mentions=["nope.yaml", "not found"])
    refuse(capsys, ["pretrain", "--config", str(tmp_path)], mentions=["is a directory"])
