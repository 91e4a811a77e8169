"""WordPiece: train on captions, load a BERT vocab.txt, frame with [CLS]/[SEP]."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlp.data.tokenizer import SPECIAL_TOKENS, Tokenizer
from vlp.errors import VlpError

CAPTIONS = [
    "a red circle left of a blue square",
    "two green triangles above a small yellow star",
    "the large red circle is bigger than the blue square",
] * 20


def test_train_and_reload(tmp_path: Path) -> None:
    tok = Tokenizer.train(CAPTIONS, tmp_path / "vocab.txt", vocab_size=200, min_frequency=1)
    assert (tmp_path / "vocab.txt").is_file()
    again = Tokenizer.from_vocab(tmp_path / "vocab.txt")
    assert again.vocab_size == tok.vocab_size
    (ids,) = again.encode(["A Red circle left of a blue square"], max_length=40)
    assert ids[0] == again.cls_id and ids[-1] == again.sep_id
    assert again.decode(ids) == "a red circle left of a blue square"
    (unknown,) = again.encode(["red ☃"], max_length=40)
    assert again.unk_id in unknown


def test_truncation(tmp_path: Path) -> None:
    tok = Tokenizer.train(CAPTIONS, tmp_path / "vocab.txt", vocab_size=200, min_frequency=1)
    (ids,) = tok.encode([" ".join(["circle"] * 50)], max_length=10)
    assert len(ids) == 10 and ids[-1] == tok.sep_id


def test_bert_vocab_txt(tmp_path: Path) -> None:
    """A BERT-layout vocab.txt ([PAD] 0, [UNK] 100, [CLS] 101 …) keeps its ids."""
    lines = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]",
                                                                  "[MASK]", "red", "circle",
                                                                  "##s"]
    (tmp_path / "vocab.txt").write_text("\n".join(lines) + "\n")
    tok = Tokenizer.from_vocab(tmp_path / "vocab.txt")
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 100, 101, 102,
                                                                             103)
    assert tok.encode(["red circles"], 10) == [[101, 104, 105, 106, 102]]


def test_missing_vocab_and_missing_special(tmp_path: Path) -> None:
    with pytest.raises(VlpError, match="vocabulary file not found"):
        Tokenizer.from_vocab(tmp_path / "nope.txt")
    (tmp_path / "v.txt").write_text("\n".join(t for t in SPECIAL_TOKENS if t != "[MASK]"))
    with pytest.raises(VlpError, match=r"lacks special token \[MASK\]"):
        Tokenizer.from_vocab(tmp_path / "v.txt")


def test_empty_vocab_path_names_the_field() -> None:
    with pytest.raises(VlpError) as e:
        Tokenizer.from_vocab("", field="data.vocab")
    assert str(e.value).startswith("data.vocab: empty; set it to a vocab.txt")


@pytest.mark.parametrize("content", [b"", b"\xff\xfe[PAD]\n", b"\x00\x01binary"])
def test_empty_or_binary_vocab_is_one_line(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "vocab.txt"
    path.write_bytes(content)
    with pytest.raises(VlpError) as e:
        Tokenizer.from_vocab(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_training_on_blank_texts_is_refused(tmp_path: Path) -> None:
    with pytest.raises(VlpError, match="no caption text"):
        Tokenizer.train(["", "  "], tmp_path / "vocab.txt", vocab_size=50)
    assert not (tmp_path / "vocab.txt").exists()


_TRAIN = """
import sys
from vlp.data.tokenizer import Tokenizer
texts = [f"a {c} {s} left of a {c2} {s2} number{i % 7}" for i, (c, s, c2, s2) in enumerate(
    (c, s, c2, s2) for c in ("red", "blue", "green", "pink") for s in ("circle", "star", "kite")
    for c2 in ("tan", "cyan", "grey") for s2 in ("disk", "box", "kite"))]
Tokenizer.train(texts, sys.argv[1], vocab_size=110, min_frequency=1)
"""


def test_training_is_byte_identical_across_processes(tmp_path: Path) -> None:
    """The trainer's hash maps are seeded per process; the vocabulary must not depend on
    it (ties between equally frequent merges used to be broken by hash order)."""
    import os
    import subprocess
    import sys

    outs = []
    for seed in ("1", "2", "3"):
        out = tmp_path / f"vocab_{seed}.txt"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-c", _TRAIN, str(out)], check=True, env=env)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] == outs[2]
    assert outs[0].decode().splitlines()[:5] == list(SPECIAL_TOKENS)


def test_a_vocabulary_learned_on_captions_reads_punctuation_and_digits(tmp_path: Path) -> None:
    """Captions without a question mark still give a vocabulary that reads a question's."""
    tok = Tokenizer.train(["a red circle left of a blue square"] * 3, tmp_path / "vocab.txt",
                          vocab_size=120, min_frequency=1)
    [ids] = tok.encode(["a red circle? 2, 30."], 20)
    assert tok.unk_id not in ids
    assert [tok.backend.id_to_token(i) for i in ids[4:-1]] == ["?", "2", ",", "3", "##0", "."]
