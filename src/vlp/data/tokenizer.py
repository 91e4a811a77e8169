"""WordPiece tokenisation through the ``tokenizers`` library (BERT's ``vocab.txt``)."""

from __future__ import annotations

import string
import tempfile
from collections.abc import Iterable
from pathlib import Path

from tokenizers import BertWordPieceTokenizer

from vlp.errors import VlpError, input_error
from vlp.fileio import atomic_path

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_PREFIX = "##"  # BERT's continuing-subword prefix
# characters every trained vocabulary holds, seen in its texts or not
ALWAYS = string.punctuation + string.digits


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
    def from_vocab(cls, path: str | Path, lowercase: bool = True,
                   field: str = "data.vocab") -> Tokenizer:
        """Load a BERT ``vocab.txt`` (one token per line, UTF-8).

        Args:
            path: the vocabulary file.
            lowercase: lower-case (and strip accents from) text before splitting it.
            field: the config field ``path`` came from, named when it is empty.

        Raises:
            VlpError: ``path`` is empty, missing, a directory, not UTF-8 text, holds no
                tokens, or lacks one of the special tokens.
        """
        if not str(path).strip() or Path(path) == Path("."):
            raise VlpError(f"{field}: empty; set it to a vocab.txt (a BERT vocabulary, one "
                           "token per line), e.g. one written by 'vlp tokenizer train'")
        path = Path(path)
        _check_vocab_file(path)
        try:
            backend = BertWordPieceTokenizer(str(path), lowercase=lowercase)
        except Exception as e:  # the Rust loader's errors are of no one Python type
            detail = " ".join(str(e).split())
            raise input_error(path, None, f"not a readable vocabulary ({detail})") from None
        return cls(backend, path)

    @classmethod
    def train(cls, texts: Iterable[str], out_path: str | Path, vocab_size: int = 4000,
              min_frequency: int = 2) -> Tokenizer:
        """Train a WordPiece vocabulary on ``texts`` and write it to ``out_path``.

        Every ASCII punctuation mark and digit is a token, and every digit a continuation
        (``##7``), whether or not ``texts`` hold them (:data:`ALWAYS`), as in BERT's
        vocabulary: a vocabulary learned on captions alone still reads the ``?`` of a
        question and the ``12`` of an answer, instead of mapping them to ``[UNK]``.

        The same texts give a byte-identical file on every run: the trainer breaks ties
        between equally frequent merges by token id, and the ids of every starting symbol
        (the special tokens, then each ``##c`` continuation, then each character, both by
        code point) are fixed before training, rather than in the order of a hash map.

        Raises:
            VlpError: there is no text to learn from (no texts, or all blank).
        """
        texts = list(texts)
        backend = BertWordPieceTokenizer(lowercase=True)
        # a number of several digits is one word: its digits after the first continue it
        continuations = sorted({*_continuation_symbols(backend, texts),
                                *(_PREFIX + d for d in string.digits)})
        if not any(t.strip() for t in texts):
            raise VlpError(f"{out_path}: no caption text to learn a vocabulary from "
                           f"({len(texts)} texts, all empty)")
        backend.train_from_iterator(
            texts, vocab_size=vocab_size, min_frequency=min_frequency,
            special_tokens=[*SPECIAL_TOKENS, *continuations], show_progress=False,
            initial_alphabet=list(ALWAYS),
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

    def token_id(self, token: str) -> int | None:
        """The id of a whole-word ``token`` in the vocabulary, or None."""
        found = self.backend.token_to_id(token)
        return None if found is None else int(found)

    def mirror_pairs(self) -> list[tuple[int, int]]:
        """Token ids that a horizontal flip of the image swaps in its text: ``left`` /
        ``right`` (those in the vocabulary)."""
        ids = (self.token_id("left"), self.token_id("right"))
        return [(ids[0], ids[1])] if ids[0] is not None and ids[1] is not None else []

    @property
    def special_ids(self) -> list[int]:
        """Ids that masking must never choose."""
        return [self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id]


def _check_vocab_file(path: Path) -> None:
    """Raise one line unless ``path`` is a readable, non-empty UTF-8 text file."""
    if path.is_dir():
        raise input_error(path, None, "is a directory (expected a BERT vocab.txt file)")
    if not path.is_file():
        raise input_error(path, None, "vocabulary file not found (expected a BERT vocab.txt)")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise input_error(path, None, f"not UTF-8 text (byte {e.start}); expected a BERT "
                                      "vocab.txt, one token per line") from None
    except OSError as e:
        raise input_error(path, None, f"cannot read ({e.strerror})") from None
    if "\x00" in text:
        raise input_error(path, None, "binary data (NUL bytes); expected a BERT vocab.txt, "
                                      "one token per line")
    if not text.strip():
        raise input_error(path, None, "empty; expected a BERT vocab.txt, one token per line, "
                                      f"including {', '.join(SPECIAL_TOKENS)}")


def _continuation_symbols(backend: BertWordPieceTokenizer, texts: list[str]) -> list[str]:
    """``##c`` for every character that continues a word of ``texts``, by code point.

    Handing these to the trainer first fixes their ids; otherwise it numbers them in the
    order of its word hash map, which changes from run to run and decides ties between
    equally frequent merges (so the vocabulary itself would change).
    """
    normalizer, pre_tokenizer = backend.normalizer, backend.pre_tokenizer
    chars: set[str] = set()
    for text in texts:
        for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)):
            chars.update(word[1:])
    return [_PREFIX + c for c in sorted(chars)]
