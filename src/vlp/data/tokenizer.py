"""WordPiece tokenisation through the ``tokenizers`` library (BERT's ``vocab.txt``)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

from tokenizers import BertWordPieceTokenizer

from vlp.errors import VlpError
from vlp.fileio import atomic_path

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


class Tokenizer:
    """A BERT WordPiece tokenizer: ``[CLS] text [SEP]`` framing, lower-casing.

    Build with :meth:`from_vocab` (a BERT ``vocab.txt``) or :meth:`train`.
    """

    def __init__(self, backend: BertWordPieceTokenizer, vocab_path: Path) -> None:
        self.backend = backend
        self.vocab_path = vocab_path
        vocab = backend.get_vocab()
        missing = [t for t in SPECIAL_TOKENS if t not in vocab]
        if missing:
            raise VlpError(f"{vocab_path}: vocabulary lacks special token {missing[0]} "
                           f"(expected all of {', '.join(SPECIAL_TOKENS)})")
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (
            vocab[t] for t in SPECIAL_TOKENS
        )
        self.vocab_size = backend.get_vocab_size()

    @classmethod
    def from_vocab(cls, path: str | Path, lowercase: bool = True) -> Tokenizer:
        """Load a BERT ``vocab.txt`` (one token per line)."""
        path = Path(path)
        if not path.is_file():
            raise VlpError(f"{path}: vocabulary file not found (expected a BERT vocab.txt)")
        return cls(BertWordPieceTokenizer(str(path), lowercase=lowercase), path)

    @classmethod
    def train(cls, texts: Iterable[str], out_path: str | Path, vocab_size: int = 4000,
              min_frequency: int = 2) -> Tokenizer:
        """Train a WordPiece vocabulary on ``texts`` and write it to ``out_path``."""
        backend = BertWordPieceTokenizer(lowercase=True)
        backend.train_from_iterator(
            texts, vocab_size=vocab_size, min_frequency=min_frequency,
            special_tokens=list(SPECIAL_TOKENS), show_progress=False,
        )
        out_path = Path(out_path)
        with tempfile.TemporaryDirectory() as tmp, atomic_path(out_path) as target:
            written = Path(backend.save_model(tmp)[0])
            target.write_bytes(written.read_bytes())
        return cls.from_vocab(out_path)

    def encode(self, texts: list[str], max_length: int) -> list[list[int]]:
        """Token ids of each text with ``[CLS] … [SEP]``, truncated to ``max_length``."""
        self.backend.enable_truncation(max_length)
        return [e.ids for e in self.backend.encode_batch(texts)]

    def decode(self, ids: list[int]) -> str:
        """Text of ``ids`` with special tokens dropped."""
        return str(self.backend.decode(ids))

    @property
    def special_ids(self) -> list[int]:
        """Ids that masking must never choose."""
        return [self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id]
