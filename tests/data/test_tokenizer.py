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
