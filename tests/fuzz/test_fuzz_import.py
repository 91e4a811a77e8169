"""Bad checkpoints: Hugging Face directories and ``vlp import`` outputs with a broken
config, broken weights, a hostile pickle or a weight of the wrong shape. Each is refused
with one line naming the file — through ``vlp import SRC OUT`` (OUT never appears), through
:func:`load_imported` (what ``train.init`` and ``train.init_text`` read) and through the
trainer's CLI — and nothing in a hostile file runs.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from fuzz_harness import refuse
from safetensors.torch import load_file, save_file
from torch import nn

from vlp.convert import import_checkpoint, load_imported
from vlp.errors import VlpError
from vlp.models.weights import load_partial

MARKER = "PWNED_MARKER"
ST = "model.safetensors"
BIN = "pytorch_model.bin"
HIDDEN = 8


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-layer, 8-wide BertForPreTraining saved by transformers."""
    from transformers import BertConfig, BertForPreTraining

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=20, hidden_size=HIDDEN, num_hidden_layers=1,
                     num_attention_heads=2, intermediate_size=16, max_position_embeddings=16)
    out = tmp_path_factory.mktemp("hf") / "bert"
    BertForPreTraining(cfg).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def imported(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A good ``vlp import`` output of the tiny BERT."""
    return import_checkpoint(tiny_bert, tmp_path_factory.mktemp("vlp") / "bert")


# ---- ways to break a Hugging Face directory ------------------------------------------------

Breaker = Callable[[Path], None]


def _edit_config(change: Callable[[dict[str, object]], object]) -> Breaker:
    def apply(src: Path) -> None:
        cfg = json.loads((src / "config.json").read_text())
        result = change(cfg)
        (src / "config.json").write_text(json.dumps(cfg if result is None else result))
    return apply


def _set(key: str, value: object) -> Breaker:
    def change(cfg: dict[str, object]) -> None:
        cfg[key] = value
    return _edit_config(change)


def _drop(key: str) -> Breaker:
    return _edit_config(lambda cfg: cfg.pop(key) and None)


def _write(name: str, data: bytes, remove: str = "") -> Breaker:
    def apply(src: Path) -> None:
        if remove:
            (src / remove).unlink()
        (src / name).write_bytes(data)
    return apply


def _truncate(src: Path) -> None:
    data = (src / ST).read_bytes()
    (src / ST).write_bytes(data[: len(data) // 2])


def _header_only(src: Path) -> None:
    data = (src / ST).read_bytes()
    size = int.from_bytes(data[:8], "little")
    (src / ST).write_bytes(data[: 8 + size])  # the header promises tensors that are gone


class _Hostile:
    """Unpickling this would run a shell command that creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _hostile_pickle(src: Path) -> None:
    (src / ST).unlink()
    payload = {"bert.embeddings.word_embeddings.weight": _Hostile(src.parent / MARKER)}
    (src / BIN).write_bytes(pickle.dumps(payload))


def _hostile_torch_save(src: Path) -> None:
    (src / ST).unlink()
    torch.save({"w": _Hostile(src.parent / MARKER)}, src / BIN)  # the zip format


def _bin_of(obj: object) -> Breaker:
    def apply(src: Path) -> None:
        (src / ST).unlink()
        torch.save(obj, src / BIN)
    return apply


def _good_bin(src: Path) -> dict[str, torch.Tensor]:
    return load_file(str(src / ST))


def _reshape(key: str, shape: tuple[int, ...], fmt: str = ST) -> Breaker:
    def apply(src: Path) -> None:
        state = _good_bin(src)
        state[key] = torch.zeros(shape)
        (src / ST).unlink()
        if fmt == ST:
            save_file(state, str(src / ST))
        else:
            torch.save(state, src / BIN)
    return apply


def _drop_weight(key: str) -> Breaker:
    def apply(src: Path) -> None:
        state = _good_bin(src)
        del state[key]
        save_file(state, str(src / ST))
    return apply


def _remove(name: str) -> Breaker:
    return lambda src: (src / name).unlink()


EMB = "bert.embeddings.word_embeddings.weight"
Q = "bert.encoder.layer.0.attention.self.query.weight"

# kind → (how to break the directory, what the error line must mention)
HF_CASES: dict[str, tuple[Breaker, str]] = {
    "config_list": (_edit_config(lambda cfg: [cfg]), "config.json"),
    "config_null": (_write("config.json", b"null"), "config.json"),
    "config_string": (_write("config.json", b'"bert"'), "config.json"),
    "config_not_json": (_write("config.json", b"{hidden_size: 8,"), "not valid JSON"),
    "config_empty": (_write("config.json", b""), "not valid JSON"),
    "config_not_utf8": (_write("config.json", b'{"model_type": "\xff\xfe"}'), "not UTF-8"),
    "config_missing": (_remove("config.json"), "config.json"),
    "size_is_string": (_set("hidden_size", "768"), "hidden_size"),
    "size_is_null": (_set("hidden_size", None), "hidden_size"),
    "size_is_float": (_set("hidden_size", 8.5), "hidden_size"),
    "size_is_bool": (_set("num_hidden_layers", True), "num_hidden_layers"),
    "size_is_list": (_set("intermediate_size", [16]), "intermediate_size"),
    "size_negative": (_set("hidden_size", -8), "hidden_size"),
    "layers_zero": (_set("num_hidden_layers", 0), "num_hidden_layers"),
    "vocab_negative": (_set("vocab_size", -20), "vocab_size"),
    "positions_huge": (_set("max_position_embeddings", 2**40), "max_position_embeddings"),
    "key_missing": (_drop("vocab_size"), "vocab_size"),
    "heads_do_not_divide": (_set("num_attention_heads", 3), "num_heads"),
    "dropout_above_one": (_set("hidden_dropout_prob", 1.5), "hidden_dropout_prob"),
    "eps_nan": (_set("layer_norm_eps", float("nan")), "layer_norm_eps"),
    "eps_negative": (_set("layer_norm_eps", -1e-12), "layer_norm_eps"),
    "pad_beyond_vocab": (_set("pad_token_id", 25), "pad_id"),
    "activation_other": (_set("hidden_act", "relu"), "hidden_act"),
    "activation_not_string": (_set("hidden_act", ["gelu"]), "hidden_act"),
    "model_type_list": (_set("model_type", ["bert"]), "model_type"),
    "model_type_unknown": (_set("model_type", "gpt2"), "model_type"),
    "safetensors_random": (_write(ST, os.urandom(256)), ST),
    "safetensors_empty": (_write(ST, b""), ST),
    "safetensors_truncated": (_truncate, ST),
    "safetensors_header_only": (_header_only, ST),
    "safetensors_bad_header": (_write(ST, (64).to_bytes(8, "little") + b"{" * 64), ST),
    "bin_random": (_write(BIN, os.urandom(256), remove=ST), BIN),
    "bin_empty": (_write(BIN, b"", remove=ST), BIN),
    "bin_hostile_pickle": (_hostile_pickle, BIN),
    "bin_hostile_torch_save": (_hostile_torch_save, BIN),
    "bin_list": (_bin_of([torch.zeros(2)]), BIN),
    "bin_non_tensor_values": (_bin_of({"w": 3}), BIN),
    "no_weights": (_remove(ST), "no weights found"),
    "weight_missing": (_drop_weight(Q), Q),
    "shape_embedding": (_reshape(EMB, (21, HIDDEN)), EMB),
    "shape_fused_query": (_reshape(Q, (HIDDEN, 4)), Q),
    "shape_layernorm": (_reshape("bert.embeddings.LayerNorm.bias", (3,)),
                        "bert.embeddings.LayerNorm.bias"),
    "shape_mlm_head": (_reshape("cls.predictions.bias", (7,)), "cls.predictions.bias"),
    "shape_in_bin": (_reshape(EMB, (20, 3), fmt=BIN), EMB),
}


def _broken_copy(source: Path, dest: Path, case: tuple[Breaker, str]) -> tuple[Path, str]:
    """A copy of ``source`` at ``dest`` broken by ``case`` (breaker, what the error names)."""
    shutil.copytree(source, dest)
    breaker, mention = case
    breaker(dest)
    return dest, mention


def _broken(tiny_bert: Path, tmp_path: Path, kind: str) -> tuple[Path, str]:
    return _broken_copy(tiny_bert, tmp_path / "src" / "bert", HF_CASES[kind])


@pytest.mark.parametrize("kind", list(HF_CASES))
def test_vlp_import_refuses(kind: str, tiny_bert: Path, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    src, mention = _broken(tiny_bert, tmp_path, kind)
    out = tmp_path / "out"
    refuse(capsys, ["import", str(src), str(out)], watch=[src],
           absent=[out, tmp_path / "src" / MARKER], mentions=[mention])


@pytest.mark.parametrize("kind", list(HF_CASES))
def test_load_imported_refuses_hf(kind: str, tiny_bert: Path, tmp_path: Path) -> None:
    src, mention = _broken(tiny_bert, tmp_path, kind)
    with pytest.raises(VlpError) as err:
        load_imported(src)
    line = str(err.value)
    assert "\n" not in line and mention in line, line
    assert not (tmp_path / "src" / MARKER).exists()


def test_shape_error_names_both_shapes(tiny_bert: Path, tmp_path: Path) -> None:
    src, _ = _broken(tiny_bert, tmp_path, "shape_embedding")
    with pytest.raises(VlpError, match=r"model\.safetensors: field '.*word_embeddings.weight': "
                                        r"shape \(21, 8\), expected \(20, 8\)"):
        load_imported(src)


def test_good_checkpoint_still_imports(tiny_bert: Path, imported: Path) -> None:
    assert load_imported(tiny_bert).config.hidden_size == HIDDEN
    assert load_imported(imported).text_only


# ---- ways to break a `vlp import` output ---------------------------------------------------

def _yaml(change: Callable[[dict[str, object]], object]) -> Breaker:
    def apply(out: Path) -> None:
        doc = yaml.safe_load((out / "model.yaml").read_text())
        result = change(doc)
        (out / "model.yaml").write_text(yaml.safe_dump(doc if result is None else result))
    return apply


def _model_field(key: str, value: object) -> Breaker:
    return _yaml(lambda doc: doc["model"].__setitem__(key, value))  # type: ignore[attr-defined]


def _tensors(change: Callable[[dict[str, torch.Tensor]], None]) -> Breaker:
    def apply(out: Path) -> None:
        state = load_file(str(out / ST))
        change(state)
        save_file(state, str(out / ST))
    return apply


IMPORT_CASES: dict[str, tuple[Breaker, str]] = {
    "st_random": (_write(ST, os.urandom(300)), ST),
    "st_empty": (_write(ST, b""), ST),
    "st_truncated": (_truncate, ST),
    "st_missing": (_remove(ST), ST),
    "yaml_unknown_key": (_model_field("hiden_size", 8), "hiden_size"),
    "yaml_bad_value": (_model_field("hidden_size", -8), "model.hidden_size"),
    "yaml_wrong_type": (_model_field("num_layers", "one"), "num_layers"),
    "yaml_not_yaml": (_write("model.yaml", b"model: [1, 2\n"), "not valid YAML"),
    "yaml_not_utf8": (_write("model.yaml", b"model:\n  arch: \xff\n"), "not UTF-8"),
    "yaml_list": (_yaml(lambda doc: [doc]), "model.yaml"),
    "yaml_no_model": (_yaml(lambda doc: {"text_only": True}), "model"),
    "yaml_model_not_mapping": (_yaml(lambda doc: {"model": 5, "text_only": True}), "model"),
    "yaml_text_only_string": (_yaml(lambda doc: doc.__setitem__("text_only", "yes")),
                              "text_only"),
    "yaml_python_tag": (_write("model.yaml", b'!!python/object/apply:os.system '
                                             b'["touch PWNED_MARKER"]\n'), "not valid YAML"),
    "tensor_wrong_shape": (_tensors(lambda s: s.__setitem__("text_embed.word.weight",
                                                            torch.zeros(20, 3))),
                           "text_embed.word.weight"),
    "tensor_no_place": (_tensors(lambda s: s.__setitem__("nowhere.weight", torch.zeros(2))),
                        "nowhere.weight"),
    "head_key_without_weight": (_tensors(lambda s: s.__setitem__("heads.mlm", torch.zeros(2))),
                                "heads.mlm"),
    "head_wrong_shape": (_tensors(lambda s: s.__setitem__("heads.mlm.head.decoder.bias",
                                                          torch.zeros(3))), "heads.mlm"),
}


def _broken_import(imported: Path, tmp_path: Path, kind: str) -> tuple[Path, str]:
    return _broken_copy(imported, tmp_path / "imp" / "bert", IMPORT_CASES[kind])


@pytest.mark.parametrize("kind", list(IMPORT_CASES))
def test_load_imported_refuses_import_dir(kind: str, imported: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    out, mention = _broken_import(imported, tmp_path, kind)
    with pytest.raises(VlpError) as err:
        load_imported(out)
    line = str(err.value)
    assert "\n" not in line and mention in line and str(out) in line, line
    assert not (tmp_path / MARKER).exists()


@pytest.mark.parametrize("kind", ["st_random", "st_truncated", "yaml_unknown_key",
                                  "tensor_wrong_shape"])
@pytest.mark.parametrize("field", ["init_text", "init"])
def test_trainer_init_refuses(kind: str, field: str, imported: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    out, mention = _broken_import(imported, tmp_path, kind)
    run = tmp_path / "run"
    refuse(capsys, ["pretrain", f"train.{field}={out}", f"train.out={run}"], watch=[out],
           absent=[run], mentions=[mention])


@pytest.mark.parametrize("kind", ["safetensors_random", "bin_hostile_pickle", "shape_in_bin",
                                  "config_list"])
def test_trainer_init_text_refuses_hf(kind: str, tiny_bert: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    src, mention = _broken(tiny_bert, tmp_path, kind)
    run = tmp_path / "run"
    refuse(capsys, ["pretrain", f"train.init_text={src}", f"train.out={run}"], watch=[src],
           absent=[run, tmp_path / "src" / MARKER], mentions=[mention])


def test_import_source_that_is_a_file(tiny_bert: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    refuse(capsys, ["import", str(tiny_bert / "config.json"), str(out)], absent=[out],
           mentions=["not a directory"])


# ---- load_partial: a weight of the wrong shape never half-loads ---------------------------

def test_load_partial_refuses_shape_mismatch() -> None:
    module = nn.Linear(4, 3)
    before = module.weight.detach().clone()
    with pytest.raises(VlpError) as err:
        load_partial(module, {"bias": torch.zeros(3), "weight": torch.zeros(3, 5)}, "ckpt")
    line = str(err.value)
    assert "\n" not in line and "'weight'" in line and "(3, 5)" in line and "(3, 4)" in line
    assert torch.equal(module.weight, before) and not torch.equal(module.bias,
                                                                  torch.zeros(3))
