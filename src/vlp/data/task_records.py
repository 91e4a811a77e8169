"""Plain records of the downstream-task formats, read by :mod:`vlp.data.formats` (``vqa``,
``snli_ve``, ``nlvr2``, ``refcoco``, ``vcr``).

Records hold ids, text and labels only; no tensors. Text is kept as published (not
normalised); identifiers keep the dataset's own spelling.
"""

from __future__ import annotations

from dataclasses import dataclass

VE_LABELS: tuple[str, ...] = ("entailment", "neutral", "contradiction")

# a VCR token: a word, or the indices into ``objects`` of the objects a tag refers to
VCRToken = str | tuple[int, ...]


@dataclass(frozen=True)
class VQAQuestion:
    """One VQA v2 question, with its annotations when the split has them.

    Attributes:
        question_id: the question's id.
        image_id: the COCO image the question is about.
        question: the question text.
        answers: the annotators' answers (10 in VQA v2), in file order; empty when no
            annotations were read (e.g. test-dev).
        answer_type: ``yes/no``, ``number`` or ``other``; None without annotations.
        question_type: the first words of the question, e.g. ``what color is the``; None
            without annotations.
        multiple_choice_answer: the most common answer, as published; None without
            annotations.
    """

    question_id: int
    image_id: int
    question: str
    answers: tuple[str, ...] = ()
    answer_type: str | None = None
    question_type: str | None = None
    multiple_choice_answer: str | None = None


@dataclass(frozen=True)
class VERecord:
    """One SNLI-VE example: does the image entail the hypothesis?

    Attributes:
        pair_id: ``pairID`` as published, e.g. ``2248275918.jpg#0r1n``.
        image: the Flickr30k image file name (``Flikr30kID``), e.g. ``2248275918.jpg``.
        hypothesis: ``sentence2``.
        label: ``entailment``, ``neutral`` or ``contradiction`` (``gold_label``).
        premise: ``sentence1``, the Flickr30k caption that SNLI-VE replaces by the image.
    """

    pair_id: str
    image: str
    hypothesis: str
    label: str
    premise: str


@dataclass(frozen=True)
class NLVR2Record:
    """One NLVR2 example: is the sentence true of the image pair?

    Attributes:
        identifier: ``split-set_id-pair_id-sentence_id``, e.g. ``dev-850-0-0``.
        sentence: the statement.
        label: True or False (published as the strings ``"True"`` / ``"False"``).
        left_image: the left image file, e.g. ``dev-850-0-img0.png``.
        right_image: the right image file, e.g. ``dev-850-0-img1.png``.
    """

    identifier: str
    sentence: str
    label: bool
    left_image: str
    right_image: str


@dataclass(frozen=True)
class RefRecord:
    """One referred object of RefCOCO / RefCOCO+ / RefCOCOg with all its expressions.

    Attributes:
        ref_id: the ref's id.
        image_id: the COCO image.
        ann_id: the COCO instance annotation of the referred object.
        split: as published: ``train``, ``val``, ``testA``, ``testB`` or ``test``.
        sentences: the expressions' ``raw`` texts, in file order.
        sent_ids: the expressions' ``sent_id``, aligned with ``sentences``.
        box_xywh: the object's box from the instances file, ``(x, y, width, height)``.
        category_id: the object's COCO category.
    """

    ref_id: int
    image_id: int
    ann_id: int
    split: str
    sentences: tuple[str, ...]
    sent_ids: tuple[int, ...]
    box_xywh: tuple[float, float, float, float]
    category_id: int


@dataclass(frozen=True)
class VCRRecord:
    """One VCR question with its answer and rationale choices, tokens as published.

    Attributes:
        annot_id: e.g. ``val-0``.
        image: ``img_fn``, relative to ``vcr1images``.
        metadata: ``metadata_fn``, the JSON file of boxes, relative to ``vcr1images``.
        objects: class name of each detected object, e.g. ``("person", "person", "car")``.
        question: tokens; a tag is a tuple of indices into ``objects``.
        answers: the four answer choices, tokens like ``question``.
        rationales: the four rationale choices, tokens like ``question``.
        answer_label: index of the right answer; None in the test split.
        rationale_label: index of the right rationale; None in the test split.
    """

    annot_id: str
    image: str
    metadata: str
    objects: tuple[str, ...]
    question: tuple[VCRToken, ...]
    answers: tuple[tuple[VCRToken, ...], ...]
    rationales: tuple[tuple[VCRToken, ...], ...]
    answer_label: int | None
    rationale_label: int | None


@dataclass(frozen=True)
class VCRMetadata:
    """The per-image metadata JSON of VCR (``metadata_fn``).

    Attributes:
        boxes: one ``(x1, y1, x2, y2, score)`` per object, Detectron format.
        width: image width in pixels.
        height: image height in pixels.
        names: the objects' class names (``()`` if the file has no ``names``).
    """

    boxes: tuple[tuple[float, float, float, float, float], ...]
    width: int
    height: int
    names: tuple[str, ...]
