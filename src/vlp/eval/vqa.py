"""The official VQA v2 accuracy, reproduced exactly, quirks included.

Reference: ``PythonEvaluationTools/vqaEvaluation/vqaEval.py`` of GT-Vision-Lab/VQA (master,
the version quoted and confirmed by its author in GT-Vision-Lab/VQA issue #14). That script
runs under Python 2.7. What it does, and this module does the same:

* Every ground-truth answer and the predicted answer get ``\\n`` and ``\\t`` replaced by spaces
  and are stripped.
* Only when the (stripped) ground-truth answers are **not all identical**
  (``len(set(gtAnswers)) > 1``) do both the ground-truth answers and the prediction go through
  ``processPunctuation`` then ``processDigitArticle``. When all annotators agree nothing else
  is done: against ten ``"yes"``, ``" yes "`` scores 1 (stripped) but ``"Yes."`` scores 0.
  Its author says this is deliberate (answers read from text in the image keep their form).
* ``processPunctuation``: for each mark of a fixed list (no ``.``, no ``'``, no ``:``), if the
  *original* text has the mark next to a space, or has a digit-comma-digit anywhere, the mark
  is deleted, else it is replaced by a space; then periods not followed by a digit are
  deleted by the regex ``(?!<=\\d)(\\.)(?!\\d)`` (a mistyped look-behind that never applies)
  with ``re.UNICODE`` passed where ``count`` goes, so at most 32 periods are deleted.
* ``processDigitArticle``: lower-case, split on whitespace, map number words ``none`` and
  ``zero`` .. ``ten`` to digits, drop the articles ``a``, ``an``, ``the``, replace words found
  in the contractions table, join with single spaces.
* Accuracy of one question: for each of the annotators, ``min(1, matches among the other
  answers / 3)``, averaged over the annotators. The script leaves an annotator out by
  comparing whole answer dicts, which differ by ``answer_id`` (1 to 10) in every published
  file, so here it is left out by position.
* Per question, per question type, per answer type and overall: ``round(100 * acc, 2)``.

Python 2 details kept: ``\\d`` matches ASCII digits only; ``lower`` maps one character to one
character; ``round`` is correctly rounded with ties away from zero (``12.125`` → ``12.13``,
where Python 3 gives ``12.12``); sums run left to right in annotation order.
"""

from __future__ import annotations

import operator
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Any, Protocol

from vlp.errors import VlpError, input_error

# the table of vqaEval.py as published, odd entries included: keys with capitals can never
# match (the text is lower-cased first) and "somebody'd" maps to "somebodyd"
CONTRACTIONS: dict[str, str] = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've",
    "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've",
    "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've",
    "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're",
    "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've",
    "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't",
    "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll",
    "youre": "you're", "youve": "you've",
}

NUMBER_WORDS: dict[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}

ARTICLES: tuple[str, ...] = ("a", "an", "the")

# order matters only for which replacements run first; kept as published
PUNCTUATION: tuple[str, ...] = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\",
                                "_", "-", ">", "<", "@", "`", ",", "?", "!")

# re.ASCII: under Python 2 a pattern without re.UNICODE matches ASCII digits only
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)", re.ASCII)
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)", re.ASCII)
# the script calls periodStrip.sub("", text, re.UNICODE): the flag lands in ``count``
_PERIOD_STRIP_COUNT = int(re.UNICODE)  # 32


def _py2_lower(text: str) -> str:
    # Python 2's unicode.lower maps one character to one; Python 3 gives 'İ' → 'i̇' (two)
    # and lower-cases a final 'Σ' to 'ς'. Lowering one character at a time and keeping the
    # first character reproduces the one-to-one mapping.
    if text.isascii():
        return text.lower()
    return "".join(ch.lower()[0] for ch in text)


def _clean(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


@lru_cache(maxsize=1 << 16)
def process_punctuation(text: str) -> str:
    """``processPunctuation`` of the official script.

    Args:
        text: one answer, already stripped.
    """
    out = text
    comma_digits = _COMMA_STRIP.search(text) is not None
    for p in PUNCTUATION:
        # the test looks at the original text, the replacement works on the running output
        if p + " " in text or " " + p in text or comma_digits:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_STRIP.sub("", out, count=_PERIOD_STRIP_COUNT)


@lru_cache(maxsize=1 << 16)
def process_digit_article(text: str) -> str:
    """``processDigitArticle`` of the official script.

    Args:
        text: one answer, after :func:`process_punctuation`.
    """
    words = [NUMBER_WORDS.get(w, w) for w in _py2_lower(text).split()]
    return " ".join(CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES)


def normalize_answer(answer: str) -> str:
    """The full processing the official script applies to an answer.

    ``\\n``/``\\t`` → space, strip, :func:`process_punctuation`, :func:`process_digit_article`.
    The script applies it only to questions whose annotators disagree; see :func:`vqa_score`.

    Args:
        answer: a predicted or annotator answer.
    """
    return process_digit_article(process_punctuation(_clean(answer)))


def _gt_forms(gt_answers: Sequence[str]) -> list[str]:
    # the ground-truth answers in the form the script compares them
    gts = [_clean(a) for a in gt_answers]
    if len(set(gts)) > 1:
        gts = [process_digit_article(process_punctuation(a)) for a in gts]
    return gts


def _leave_one_out(form: str, gts: list[str]) -> float:
    # mean over annotators of min(1, matches among the other answers / 3); summed left to
    # right like the script, so the float is the same to the last bit
    count = gts.count(form)
    total = 0.0
    for g in gts:
        total += min(1.0, float(count - (g == form)) / 3)
    return total / len(gts)


def vqa_score(prediction: str, gt_answers: Sequence[str]) -> float:
    """VQA accuracy of one predicted answer, in [0, 1], unrounded.

    Args:
        prediction: the predicted answer as the model wrote it.
        gt_answers: the annotators' answers (10 in VQA v2), as published.

    Raises:
        VlpError: ``gt_answers`` is empty.
    """
    if not gt_answers:
        raise VlpError("vqa_score: no ground-truth answers (expected the annotators' answers)")
    gts = [_clean(a) for a in gt_answers]
    pred = _clean(prediction)
    if len(set(gts)) > 1:
        gts = [process_digit_article(process_punctuation(a)) for a in gts]
        pred = process_digit_article(process_punctuation(pred))
    return _leave_one_out(pred, gts)


def answer_targets(answers: Sequence[str]) -> dict[str, float]:
    """Soft training targets of one question: each distinct answer with its VQA score.

    Keys are the answers in the form the metric compares them (stripped only when all
    annotators agree, :func:`normalize_answer` otherwise); each value is the leave-one-out
    score the metric gives a prediction of that form, e.g. 1.0 for an answer given by 4 or
    more annotators, 0.9 / 0.6 / 0.3 for 3 / 2 / 1 of 10.

    Args:
        answers: the annotators' answers; empty gives ``{}`` (unannotated questions).
    """
    gts = _gt_forms(answers)
    return {form: _leave_one_out(form, gts) for form in dict.fromkeys(gts)}


def build_answer_vocab(answer_lists: Iterable[Sequence[str]], min_count: int = 1) -> list[str]:
    """The answers given by at least ``min_count`` annotators over a training set.

    Every annotator answer counts once (not only ``multiple_choice_answer``), in the form of
    :func:`answer_targets`, so the vocabulary holds exactly the keys targets can have.

    Args:
        answer_lists: the ``answers`` of each question.
        min_count: the fewest annotator answers an entry needs.

    Returns:
        Answers sorted by count, most frequent first, ties by text: deterministic.

    Raises:
        VlpError: ``min_count`` is below 1.
    """
    if min_count < 1:
        raise VlpError(f"build_answer_vocab: min_count must be at least 1, found {min_count}")
    counts: Counter[str] = Counter()
    for answers in answer_lists:
        counts.update(_gt_forms(answers))
    kept = [(n, a) for a, n in counts.items() if n >= min_count]
    return [a for n, a in sorted(kept, key=lambda item: (-item[0], item[1]))]


def round_py2(value: float, ndigits: int = 2) -> float:
    """``round`` of Python 2.7, which the official script runs under.

    Correctly rounded to ``ndigits`` decimals, ties (exact in binary) away from zero.

    Args:
        value: the number to round.
        ndigits: decimals to keep.
    """
    quantum = Decimal(1).scaleb(-ndigits)
    return float(Decimal(value).quantize(quantum, rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class VQAMetrics:
    """VQA accuracy in percent, rounded as the official script rounds.

    Attributes:
        overall: mean accuracy over all questions.
        per_answer_type: ``yes/no``, ``number``, ``other`` → accuracy.
        per_question_type: e.g. ``what color is the`` → accuracy.
        per_question: question id → accuracy of that question.
        num_questions: how many questions were scored.
    """

    overall: float
    per_answer_type: dict[str, float]
    per_question_type: dict[str, float]
    per_question: dict[int, float]
    num_questions: int


class AnnotatedQuestion(Protocol):
    """What scoring reads of an annotated question (``vlp.data.task_records.VQAQuestion``
    is one; any object with these attributes will do)."""

    @property
    def question_id(self) -> int: ...
    @property
    def answers(self) -> Sequence[str]: ...
    @property
    def answer_type(self) -> str | None: ...
    @property
    def question_type(self) -> str | None: ...


# kind → (its name in messages, its Python types); bool is no integer (JSON true is not 1)
_KINDS: dict[str, tuple[str, type | tuple[type, ...]]] = {
    "integer": ("an integer", int), "string": ("a string", str), "object": ("an object", dict)}
_FOUND = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
          int: "an integer", float: "a number", type(None): "null"}


def _check_kind(value: Any, where: str, kind: str) -> Any:
    """``value`` if it is of ``kind``, else a one-line error naming ``predictions`` and the
    field (as the data readers report a bad file)."""
    expected, types = _KINDS[kind]
    if isinstance(value, bool) or not isinstance(value, types):
        found = _FOUND.get(type(value), type(value).__name__)
        raise input_error("predictions", where, f"expected {expected}, found {found}")
    return value


def _question_id(value: Any, where: str) -> int:
    # numpy and torch integers pass as ids; bools, floats and strings do not
    if not isinstance(value, bool):
        try:
            return operator.index(value)
        except TypeError:
            pass
    return int(_check_kind(value, where, "integer"))  # raises, naming the type


def _prediction_map(predictions: Mapping[int, str] | Sequence[Mapping[str, Any]]
                    ) -> dict[int, str]:
    where = "predictions"
    if isinstance(predictions, Mapping):
        return {_question_id(qid, f"[{qid!r}] (key)"):
                _check_kind(answer, f"[{qid!r}]", "string")
                for qid, answer in predictions.items()}
    preds: dict[int, str] = {}
    for i, entry in enumerate(predictions):
        _check_kind(entry, f"[{i}]", "object")
        for key, kind in (("question_id", "an integer"), ("answer", "a string")):
            if key not in entry:
                raise input_error(where, f"[{i}].{key}", f"missing (expected {kind})")
        qid = _question_id(entry["question_id"], f"[{i}].question_id")
        # as the official loadRes: a later result for the same question replaces an earlier
        preds[qid] = _check_kind(entry["answer"], f"[{i}].answer", "string")
    return preds


def _check_same_questions(preds: dict[int, str], ids: list[int]) -> None:
    # the official loadRes asserts set(results) == set(annotations)
    known = set(ids)
    missing = [qid for qid in ids if qid not in preds]
    if missing:
        raise VlpError(f"predictions: no answer for question_id {missing[0]} "
                       f"({len(missing)} of {len(ids)} annotated questions have none)")
    extra = [qid for qid in preds if qid not in known]
    if extra:
        raise VlpError(f"predictions: question_id {extra[0]} is not an annotated question "
                       f"({len(extra)} such ids; the official script rejects the results)")


def _percent(values: list[float], ndigits: int) -> float:
    total = 0.0
    for v in values:
        total += v
    return round_py2(100 * total / len(values), ndigits)


def _annotated(question: AnnotatedQuestion) -> tuple[str, str]:
    qid = question.question_id
    if not question.answers:
        raise VlpError(f"annotations: question_id {qid} has no annotator answers "
                       "(expected an annotations file, not questions alone)")
    if question.answer_type is None or question.question_type is None:
        raise VlpError(f"annotations: question_id {qid} has no answer_type/question_type")
    return question.answer_type, question.question_type


def evaluate_vqa(predictions: Mapping[int, str] | Sequence[Mapping[str, Any]],
                 annotations: Sequence[AnnotatedQuestion], ndigits: int = 2) -> VQAMetrics:
    """Score predictions exactly as the official VQA v2 script does.

    Args:
        predictions: question id → answer, or the official results list
            ``[{"question_id": int, "answer": str}]``.
        annotations: annotated questions (:class:`AnnotatedQuestion`), e.g. from
            :func:`vlp.data.formats.vqa.read_vqa`, in
            annotation-file order (the order only matters for the last bit of the sums).
        ndigits: decimals kept, the script's ``n`` (2 by default).

    Raises:
        VlpError: a prediction is malformed, an annotated question has no prediction or a
            prediction names a question that is not annotated (the official script asserts
            both sets are equal), or a question is duplicated or has no answers.
    """
    preds = _prediction_map(predictions)
    ids = [q.question_id for q in annotations]
    if len(set(ids)) != len(ids):
        dup = next(qid for qid, n in Counter(ids).items() if n > 1)
        raise VlpError(f"annotations: question_id {dup} appears more than once")
    _check_same_questions(preds, ids)
    scores: list[float] = []
    by_answer: dict[str, list[float]] = {}
    by_question: dict[str, list[float]] = {}
    per_question: dict[int, float] = {}
    for q in annotations:
        answer_type, question_type = _annotated(q)
        acc = vqa_score(preds[q.question_id], q.answers)
        scores.append(acc)
        by_answer.setdefault(answer_type, []).append(acc)
        by_question.setdefault(question_type, []).append(acc)
        per_question[q.question_id] = round_py2(100 * acc, ndigits)
    if not scores:
        raise VlpError("annotations: no questions to evaluate")
    return VQAMetrics(
        overall=_percent(scores, ndigits),
        per_answer_type={k: _percent(v, ndigits) for k, v in by_answer.items()},
        per_question_type={k: _percent(v, ndigits) for k, v in by_question.items()},
        per_question=per_question, num_questions=len(scores))
