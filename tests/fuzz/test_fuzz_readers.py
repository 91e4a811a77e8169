"""Fuzzing the annotation, prediction and vocabulary readers with bad input.

Each reader gets a small valid fixture in its published layout; mutations are derived from
it programmatically: truncation at several offsets, every key of a representative entry
deleted, every value replaced by each wrong JSON type, out-of-range values, non-UTF-8
bytes, an empty file, a directory and a missing path. Every (reader, mutation) is its own
test id. A reader either refuses the input with one :class:`VlpError` line naming the
file, or — when the mutation leaves the file legal (a key the reader does not use, a
truncation at a line boundary) — returns normally. Any other exception fails the test.
"""

from __future__ import annotations

import json
import pickle
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fuzz_harness import refuse

from vlp.data.features import RegionStoreWriter
from vlp.data.formats.caption_list import read_image_caption_list
from vlp.data.formats.captions import read_caption_texts
from vlp.data.formats.coco import read_coco_captions, read_coco_instances
from vlp.data.formats.karpathy import read_karpathy
from vlp.data.formats.nlvr2 import read_nlvr2
from vlp.data.formats.refcoco import read_refcoco
from vlp.data.formats.snli_ve import read_snli_ve
from vlp.data.formats.vcr import read_vcr, read_vcr_metadata
from vlp.data.formats.vqa import read_vqa, read_vqa_results
from vlp.data.tokenizer import SPECIAL_TOKENS, Tokenizer
from vlp.errors import DataWarning, VlpError
from vlp.tasks.nlvr2 import NLVR2Data
from vlp.tasks.refcoco import RefCOCOData
from vlp.tasks.retrieval import RetrievalData
from vlp.tasks.vcr import VCRData, read_vcr_predictions
from vlp.tasks.ve import VEData

pytestmark = pytest.mark.slow  # a large fuzz sweep

TASKS = Path(__file__).resolve().parents[1] / "fixtures" / "tasks"
VQA_Q = TASKS / "vqa" / "v2_OpenEnded_mscoco_val2014_questions.json"
VQA_A = TASKS / "vqa" / "v2_mscoco_val2014_annotations.json"
INSTANCES = TASKS / "refcoco" / "instances.json"
VCR_META = next((TASKS / "vcr" / "vcr1images").rglob("*.json"))

Key = tuple[str | int, ...]


def _lines(path: Path) -> list[Any]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _method(cls: type, **attrs: Any) -> Callable[[Path], Any]:
    """A task's ``read_predictions`` on an instance that read no split (it needs none)."""
    obj = cls.__new__(cls)
    for k, v in attrs.items():
        setattr(obj, k, v)
    return lambda path: obj.read_predictions(path)


@dataclass
class Spec:
    """A reader, its valid document, and what it reads of it.

    Attributes:
        read: path → records.
        doc: the valid document (a JSON value; a list of rows for ``jsonl``).
        layout: ``json``, ``jsonl``, ``pickle`` or ``csv``.
        entries: key paths of the objects whose keys are mutated (``()`` is the top).
        used: per entry, the keys the reader checks; the others are free to change.
        optional: keys the reader checks but that may be absent.
        legal_kinds: key → kinds of replacement that are also legal.
        ranges: name → (edit of the document, "error" or "warn").
    """

    read: Callable[[Path], Any]
    doc: Any
    layout: str = "json"
    entries: dict[Key, set[str]] = field(default_factory=dict)
    optional: set[str] = field(default_factory=set)
    legal_kinds: dict[str, set[str]] = field(default_factory=dict)
    ranges: dict[str, tuple[Callable[[Any], None], str]] = field(default_factory=dict)


def _set(key: Key, value: Any) -> Callable[[Any], None]:
    def edit(doc: Any) -> None:
        target = doc
        for k in key[:-1]:
            target = target[k]
        target[key[-1]] = value
    return edit


def _coco_captions() -> dict[str, Any]:
    return {"info": {}, "images": [{"id": 5, "file_name": "COCO_val2014_000000000005.jpg",
                                    "width": 64, "height": 48},
                                   {"id": 7, "file_name": "b.jpg"}],
            "annotations": [{"id": 1, "image_id": 5, "caption": "a red circle"},
                            {"id": 2, "image_id": 7, "caption": "two blue squares"}]}


def _karpathy() -> dict[str, Any]:
    return {"dataset": "coco", "images": [
        {"filepath": "val2014", "sentids": [0, 1], "filename": "a.jpg", "imgid": 0,
         "split": "train", "cocoid": 5,
         "sentences": [{"tokens": ["a", "dog"], "raw": "A dog.", "imgid": 0, "sentid": 0},
                       {"tokens": ["a", "cat"], "raw": "A cat.", "imgid": 0, "sentid": 1}]},
        {"filepath": "val2014", "filename": "b.jpg", "imgid": 1, "split": "val", "cocoid": 7,
         "sentences": [{"raw": "Two birds.", "tokens": []}]}]}


def _refs() -> list[dict[str, Any]]:
    return [{"sent_ids": [0], "file_name": "COCO_train2014_000000581857_16.jpg",
             "ann_id": 1719310, "ref_id": 0, "image_id": 581857, "split": "train",
             "sentences": [{"tokens": ["lady"], "raw": "lady in blue", "sent_id": 0,
                            "sent": "lady in blue"}], "category_id": 1}]


def _specs() -> dict[str, Spec]:
    instances = json.loads(INSTANCES.read_text())
    vcr_rows = _lines(TASKS / "vcr" / "val.jsonl")
    return {
        "coco_captions": Spec(
            read_coco_captions, _coco_captions(),
            entries={(): {"images", "annotations"}, ("images", 0): {"id", "file_name"},
                     ("annotations", 0): {"id", "image_id", "caption"}},
            ranges={"unknown_image": (_set(("annotations", 0, "image_id"), 99), "error"),
                    "duplicate_image": (_set(("images", 1, "id"), 5), "error"),
                    "all_captions_blank": (lambda d: [a.update(caption=" ")
                                                      for a in d["annotations"]], "error"),
                    "one_caption_blank": (_set(("annotations", 0, "caption"), ""), "warn")}),
        "coco_instances": Spec(
            read_coco_instances, instances,
            entries={(): {"images", "annotations", "categories"},
                     ("images", 0): {"id", "file_name", "width", "height"},
                     ("annotations", 0): {"image_id", "category_id", "bbox", "id", "area",
                                          "iscrowd"},
                     ("categories", 0): {"id", "name"}},
            optional={"area", "iscrowd"},
            ranges={"bbox_inverted": (_set(("annotations", 0, "bbox", 2), -5.0), "error"),
                    "bbox_three_values": (_set(("annotations", 0, "bbox"), [1, 2, 3]),
                                          "error"),
                    "bbox_outside": (_set(("annotations", 0, "bbox", 0), 5000.0), "warn"),
                    "bbox_zero_area": (_set(("annotations", 0, "bbox", 3), 0), "warn"),
                    "image_width_zero": (_set(("images", 0, "width"), 0), "error"),
                    "unknown_category": (_set(("annotations", 0, "category_id"), 999),
                                         "error"),
                    "duplicate_annotation": (_set(("annotations", 1, "id"), 1719310),
                                             "error")}),
        "karpathy": Spec(
            read_karpathy, _karpathy(),
            entries={(): {"images"}, ("images", 0): {"filename", "split", "sentences",
                                                     "cocoid", "filepath"}},
            optional={"cocoid", "filepath"},
            ranges={"unknown_split": (_set(("images", 0, "split"), "dev"), "error"),
                    "duplicate_cocoid": (_set(("images", 1, "cocoid"), 5), "error"),
                    "sentence_not_object": (_set(("images", 0, "sentences", 0), "x"),
                                            "error"),
                    "all_captions_blank": (lambda d: [s.update(raw="") for im in d["images"]
                                                      for s in im["sentences"]], "error"),
                    "one_caption_blank": (_set(("images", 0, "sentences", 1, "raw"), "\t"),
                                          "warn")}),
        "caption_list": Spec(
            read_image_caption_list,
            [{"image": "val2014/a.jpg", "caption": ["a dog", "a cat"]},
             {"image": "val2014/b.jpg", "caption": "a bird"}],
            entries={(0,): {"image", "caption"}}, legal_kinds={"caption": {"string"}},
            ranges={"caption_item_number": (_set((0, "caption", 1), 3), "error")}),
        "caption_texts": Spec(
            read_caption_texts, _karpathy(),
            entries={("images", 0): {"filename", "split", "sentences", "cocoid", "filepath"}},
            optional={"cocoid", "filepath"},
            ranges={"no_known_key": (lambda d: d.update(images2=d.pop("images")), "error")}),
        "vqa_questions": Spec(
            lambda p: read_vqa(p, VQA_A), json.loads(VQA_Q.read_text()),
            entries={(): {"questions"},
                     ("questions", 0): {"question_id", "image_id", "question"}},
            ranges={"duplicate_question": (_set(("questions", 1, "question_id"), 262148000),
                                           "error"),
                    "no_questions": (_set(("questions",), []), "error")}),
        "vqa_annotations": Spec(
            lambda p: read_vqa(VQA_Q, p), json.loads(VQA_A.read_text()),
            entries={(): {"annotations"},
                     ("annotations", 0): {"question_id", "image_id", "answers", "answer_type",
                                          "question_type", "multiple_choice_answer"}},
            ranges={"other_image": (_set(("annotations", 0, "image_id"), 1), "error"),
                    "unknown_question": (_set(("annotations", 0, "question_id"), 1), "error"),
                    "no_answers": (_set(("annotations", 0, "answers"), []), "error"),
                    "nine_answers": (lambda d: d["annotations"][0]["answers"].pop(), "warn"),
                    "answer_not_object": (_set(("annotations", 0, "answers", 0), "x"),
                                          "error")}),
        "vqa_results": Spec(
            read_vqa_results, [{"question_id": 1, "answer": "yes"},
                               {"question_id": 2, "answer": "2"}],
            entries={(0,): {"question_id", "answer"}},
            ranges={"duplicate_question": (_set((1, "question_id"), 1), "error"),
                    "empty_list": (lambda d: d.clear(), "error")}),
        "snli_ve": Spec(
            read_snli_ve, _lines(TASKS / "snli_ve" / "snli_ve_dev.jsonl"), "jsonl",
            entries={(0,): {"gold_label", "pairID", "Flikr30kID", "sentence1", "sentence2"}},
            ranges={"label_dash": (_set((0, "gold_label"), "-"), "error"),
                    "image_without_digits": (_set((0, "Flikr30kID"), "abc.jpg"), "error"),
                    "duplicate_pair": (_set((1, "pairID"), "2248275918.jpg#2r1e"), "error")}),
        "nlvr2": Spec(
            read_nlvr2, _lines(TASKS / "nlvr2" / "dev.json"), "jsonl",
            entries={(0,): {"identifier", "sentence", "label"}},
            ranges={"label_yes": (_set((0, "label"), "yes"), "error"),
                    "identifier_short": (_set((0, "identifier"), "dev-850"), "error"),
                    "duplicate_identifier": (_set((1, "identifier"), "dev-850-0-0"), "error"),
                    "image_without_digits": (_set((0, "left_image"), "left.png"), "error")}),
        "vcr": Spec(
            read_vcr, vcr_rows, "jsonl",
            entries={(0,): {"annot_id", "img_fn", "metadata_fn", "objects", "question",
                            "answer_choices", "rationale_choices", "answer_label",
                            "rationale_label"}},
            optional={"answer_label", "rationale_label"},
            ranges={"label_7": (_set((0, "answer_label"), 7), "error"),
                    "object_index_99": (_set((0, "question", 1), [99]), "error"),
                    "three_choices": (lambda d: d[0]["answer_choices"].pop(), "error"),
                    "token_number": (_set((0, "question", 0), 3), "error"),
                    "duplicate_annot_id": (_set((1, "annot_id"), "val-0"), "error")}),
        "vcr_metadata": Spec(
            read_vcr_metadata, json.loads(VCR_META.read_text()),
            entries={(): {"boxes", "width", "height", "names"}}, optional={"names"},
            ranges={"box_four_values": (lambda d: d["boxes"][0].pop(), "error"),
                    "height_zero": (_set(("height",), 0), "error")}),
        "refcoco": Spec(
            lambda p: read_refcoco(p, INSTANCES), _refs(), "pickle",
            entries={(0,): {"ann_id", "image_id", "sentences", "ref_id", "split",
                            "category_id"}},
            ranges={"unknown_ann": (_set((0, "ann_id"), 7), "error"),
                    "other_image": (_set((0, "image_id"), 49), "error")}),
        "ve_predictions": Spec(
            _method(VEData), [{"pairID": "a#1", "gold_label": "neutral"},
                              {"pairID": "a#2", "gold_label": "entailment"}], "jsonl",
            entries={(0,): {"pairID", "gold_label"}},
            ranges={"label_maybe": (_set((0, "gold_label"), "maybe"), "error"),
                    "duplicate_pair": (_set((1, "pairID"), "a#1"), "error")}),
        "vcr_predictions": Spec(
            _method(VCRData, mode="q2a"),
            {"mode": "q2a", "predictions": [{"annot_id": "val-0", "scores": [1, 2, 3, 4],
                                             "pick": 3}]},
            entries={(): {"mode", "predictions"},
                     ("predictions", 0): {"annot_id", "scores", "pick"}},
            ranges={"pick_4": (_set(("predictions", 0, "pick"), 4), "error"),
                    "mode_other": (_set(("mode",), "qa2r"), "error"),
                    "three_scores": (_set(("predictions", 0, "scores"), [1, 2, 3]), "error"),
                    "empty_predictions": (_set(("predictions",), []), "error")}),
        "vcr_prediction_file": Spec(
            lambda p: read_vcr_predictions(p),
            {"mode": "qa2r", "predictions": [{"annot_id": "val-0", "scores": [1, 2, 3, 4],
                                              "pick": 0}]},
            entries={("predictions", 0): {"annot_id", "scores", "pick"}},
            ranges={"mode_unknown": (_set(("mode",), "q2ar"), "error")}),
        "refcoco_predictions": Spec(
            _method(RefCOCOData), [{"ref_id": 0, "sent_id": 0, "box": [1.0, 2.0, 3.0, 4.0]}],
            entries={(0,): {"ref_id", "sent_id", "box"}},
            ranges={"box_five": (_set((0, "box"), [1, 2, 3, 4, 5]), "error"),
                    "box_string": (_set((0, "box", 2), "3"), "error")}),
        "retrieval_predictions": Spec(
            _method(RetrievalData),
            {"image_ids": [1, 2], "text_image_ids": [1, 2, 2], "scores": [[1, 0, 0],
                                                                          [0, 1, 1]]},
            entries={(): {"image_ids", "text_image_ids", "scores"}},
            ranges={"ragged": (_set(("scores", 1), [0, 1]), "error"),
                    "one_row": (lambda d: d["scores"].pop(), "error"),
                    "unknown_owner": (_set(("text_image_ids", 0), 9), "error"),
                    "score_string": (_set(("scores", 0, 0), "1"), "error")}),
    }


SPECS = _specs()
WRONG: dict[str, Any] = {"null": None, "list": [1], "string": "x", "number": 1.5,
                         "object": {"a": 1}, "boolean": True}


def _kind(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", type(None): "null",
            bool: "boolean"}.get(type(value), "number")


def _entry(doc: Any, key: Key) -> Any:
    for k in key:
        doc = doc[k]
    return doc


def _encode(spec: Spec, doc: Any) -> bytes:
    if spec.layout == "jsonl":
        return "".join(json.dumps(r) + "\n" for r in doc).encode()
    if spec.layout == "pickle":
        return pickle.dumps(doc, protocol=2)
    return json.dumps(doc).encode()


@dataclass
class Case:
    """One bad input: the file's bytes (None: a directory, or nothing there) and whether
    the reader must refuse it ("error"), warn ("warn") or may accept it ("legal"/"any")."""

    content: bytes | None
    expect: str
    make_dir: bool = False


def _key_cases(name: str, spec: Spec) -> Iterator[tuple[str, Case]]:
    for key, used in spec.entries.items():
        entry = _entry(spec.doc, key)
        label = ".".join(str(k) for k in key) or "top"
        for k in entry:
            free = k not in used
            doc = json.loads(json.dumps(spec.doc))
            del _entry(doc, key)[k]
            legal = free or k in spec.optional
            yield f"{name}-delete-{label}.{k}", Case(_encode(spec, doc),
                                                     "legal" if legal else "error")
            for kind, value in WRONG.items():
                if kind == _kind(entry[k]) or (kind == "number" and _kind(entry[k]) == "number"):
                    continue
                doc = json.loads(json.dumps(spec.doc))
                _entry(doc, key)[k] = value
                expect = "legal" if free or kind in spec.legal_kinds.get(k, ()) else "error"
                yield f"{name}-type-{label}.{k}-{kind}", Case(_encode(spec, doc), expect)


def _file_cases(name: str, spec: Spec) -> Iterator[tuple[str, Case]]:
    good = _encode(spec, spec.doc)
    for frac in (0.1, 0.5, 0.9):
        yield f"{name}-truncate-{int(frac * 100)}pct", Case(good[:int(len(good) * frac)], "any")
    yield f"{name}-truncate-last-byte", Case(good.rstrip()[:-1], "any")
    yield f"{name}-empty", Case(b"", "error")
    yield f"{name}-directory", Case(None, "error", make_dir=True)
    yield f"{name}-missing", Case(None, "error")
    if spec.layout != "pickle":
        yield f"{name}-not-utf8", Case(good[:5] + b"\xff\xfe\xc3(" + good[5:], "error")
        other = [1, 2] if isinstance(spec.doc, dict) or spec.layout == "jsonl" else {"a": 1}
        yield f"{name}-wrong-top-level", Case(json.dumps(other).encode(), "error")


def _range_cases(name: str, spec: Spec) -> Iterator[tuple[str, Case]]:
    for label, (edit, expect) in spec.ranges.items():
        doc = json.loads(json.dumps(spec.doc))
        edit(doc)
        yield f"{name}-range-{label}", Case(_encode(spec, doc), expect)


CASES = dict(case for name, spec in SPECS.items()
             for gen in (_file_cases, _key_cases, _range_cases) for case in gen(name, spec))


def _one_line(error: VlpError, path: Path) -> None:
    message = str(error)
    assert "\n" not in message, message
    assert str(path) in message, message


def check(read: Callable[[Path], Any], path: Path, expect: str) -> None:
    """Run ``read`` and hold it to ``expect`` (see :class:`Case`)."""
    if expect == "error":
        with pytest.raises(VlpError) as e:
            read(path)
        _one_line(e.value, path)
    elif expect == "warn":
        with pytest.warns(DataWarning) as record:
            read(path)
        assert len([w for w in record if issubclass(w.category, DataWarning)]) == 1
        assert str(path) in str(record[0].message)
    elif expect == "legal":
        with warnings.catch_warnings():
            warnings.simplefilter("error", DataWarning)
            read(path)
    else:  # "any": refused in one line, or read
        try:
            read(path)
        except VlpError as e:
            _one_line(e, path)


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_reader_mutation(case_id: str, tmp_path: Path) -> None:
    name = case_id.split("-", 1)[0]
    case = CASES[case_id]
    path = tmp_path / "input.file"
    if case.make_dir:
        path.mkdir()
    elif case.content is not None:
        path.write_bytes(case.content)
    check(SPECS[name].read, path, case.expect)


def test_mutations_are_many_and_varied() -> None:
    """The suite covers every reader, and each kind of mutation."""
    assert {c.split("-", 1)[0] for c in CASES} == set(SPECS)
    kinds = {c.split("-")[1] for c in CASES}
    assert {"truncate", "delete", "type", "range", "empty", "directory", "missing",
            "not"} <= kinds
    assert len(CASES) >= 80


# --- text formats ------------------------------------------------------------------------

VOCAB = "\n".join([*SPECIAL_TOKENS, "red", "circle", "##s"]) + "\n"
VOCAB_CASES: dict[str, bytes | None] = {
    "empty": b"", "whitespace": b"\n \n", "not_utf8": VOCAB.encode() + b"\xff\xfe\n",
    "binary": b"\x00\x01\x02PK\x03\x04", "directory": None,
    **{f"without_{t.strip('[]').lower()}":
       "\n".join(x for x in VOCAB.splitlines() if x != t).encode() for t in SPECIAL_TOKENS},
}


@pytest.mark.parametrize("kind", sorted(VOCAB_CASES))
def test_vocabulary_refused(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "vocab.txt"
    content = VOCAB_CASES[kind]
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    check(Tokenizer.from_vocab, path, "error")
    check(Tokenizer.from_vocab, tmp_path / "missing.txt", "error")


@pytest.mark.parametrize("value", ["", " ", "."])
def test_empty_vocabulary_path_names_the_field(value: str) -> None:
    with pytest.raises(VlpError) as e:
        Tokenizer.from_vocab(value, field="data.vocab")
    assert str(e.value).startswith("data.vocab: empty; set it to a vocab.txt")


PLAIN_CASES: dict[str, tuple[bytes, str]] = {
    "plain_lines": (b"a red circle\n\n  two blue squares  \n", "legal"),
    "plain_crlf": (b"a red circle\r\ntwo squares\r\n", "legal"),
    "plain_blank_only": (b"\n   \n\t\n", "error"),
    "plain_not_utf8": (b"a red circle\n\xff\xfe\n", "error"),
    "plain_nul": (b"a red\x00circle\n", "error"),
    "json_invalid": (b'{"images": [', "error"),
    "json_list_invalid": (b"[1, 2", "error"),
}


@pytest.mark.parametrize("kind", sorted(PLAIN_CASES))
def test_caption_texts_plain_and_json(kind: str, tmp_path: Path) -> None:
    content, expect = PLAIN_CASES[kind]
    path = tmp_path / "captions.txt"
    path.write_bytes(content)
    check(read_caption_texts, path, expect)
    if expect == "legal":
        texts = read_caption_texts(path)
        assert texts[0] == "a red circle" and len(texts) == 2


NLVR2_CSV: dict[str, bytes] = {
    "truncated_label": b"dev-850-0-0,True\ndev-850-0-1,Tr",
    "no_comma": b"dev-850-0-0 True\n",
    "three_fields": b"dev-850-0-0,True,1\n",
    "label_yes": b"dev-850-0-0,yes\n",
    "empty_identifier": b",True\n",
    "duplicate": b"dev-850-0-0,True\ndev-850-0-0,False\n",
    "empty": b"",
    "not_utf8": b"dev-850-0-0,True\n\xff\n",
}


@pytest.mark.parametrize("kind", sorted(NLVR2_CSV))
def test_nlvr2_predictions_csv_refused(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "predictions.csv"
    path.write_bytes(NLVR2_CSV[kind])
    check(_method(NLVR2Data), path, "error")


# --- through the real CLI ----------------------------------------------------------------


def _caption_inputs(tmp: Path) -> dict[str, Path]:
    files = {"not_utf8.json": b'{"images": [\xff]}', "empty.txt": b"",
             "blank_captions.json": json.dumps(
                 {"images": [{"filename": "a.jpg", "cocoid": 1, "split": "train",
                              "sentences": [{"raw": "  "}, {"raw": ""}]}]}).encode(),
             "bad.json": b'{"annotations": [{"id": 1}]}'}
    out = {}
    for name, content in files.items():
        out[name] = tmp / name
        out[name].write_bytes(content)
    (tmp / "a_directory").mkdir()
    out["a_directory"] = tmp / "a_directory"
    return out


@pytest.mark.parametrize("name", ["not_utf8.json", "empty.txt", "blank_captions.json",
                                  "bad.json", "a_directory"])
def test_cli_tokenizer_train_refuses(name: str, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    bad = _caption_inputs(tmp_path)[name]
    out = tmp_path / "out" / "vocab.txt"
    refuse(capsys, ["tokenizer", "train", "--captions", str(bad), "--out", str(out)],
           watch=[bad], absent=[out, out.parent / ".vocab.txt"], mentions=[str(bad)])


@pytest.fixture(scope="module")
def vqa_setup(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Overrides for ``vlp evaluate vqa`` on the VQA fixture: a tiny store and vocab."""
    root = tmp_path_factory.mktemp("vqa")
    rng = np.random.default_rng(0)
    with RegionStoreWriter(root / "features", 8, 3, dtype="float32") as store:
        for image_id in (262148, 393225):
            boxes = np.array([[1, 1, 10, 10], [5, 5, 20, 30]], np.float32)
            store.add(image_id, 64, 64, rng.normal(size=(2, 8)).astype(np.float32), boxes,
                      rng.dirichlet(np.ones(3), 2).astype(np.float32))
    (root / "vocab.txt").write_text(VOCAB)
    return [f"data.features={root / 'features'}", f"data.vocab={root / 'vocab.txt'}",
            f"task.files.questions={VQA_Q}", f"task.files.annotations={VQA_A}",
            f"train.out={root / 'out'}", "train.tensorboard=false", "model.hidden_size=16",
            "model.num_layers=1", "model.num_heads=1", "model.intermediate_size=16"]


VQA_RESULTS: dict[str, bytes] = {
    "not_utf8": b'[{"question_id": 262148000, "answer": "\xff"}]',
    "truncated": b'[{"question_id": 262148000, "answer": "do',
    "unknown_question": b'[{"question_id": 1, "answer": "down"}]',
    "answer_number": b'[{"question_id": 262148000, "answer": 2}]',
    "empty_list": b"[]",
}


@pytest.mark.parametrize("kind", sorted(VQA_RESULTS))
def test_cli_evaluate_vqa_refuses(kind: str, vqa_setup: list[str], tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "results.json"
    bad.write_bytes(VQA_RESULTS[kind])
    refuse(capsys, ["evaluate", "vqa", "--predictions", str(bad), *vqa_setup],
           watch=[bad, VQA_Q, VQA_A], mentions=[str(bad)])


def test_cli_evaluate_vqa_missing_annotations(vqa_setup: list[str], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps([{"question_id": 262148000, "answer": "down"}]))
    missing = tmp_path / "no_annotations.json"
    refuse(capsys, ["evaluate", "vqa", "--predictions", str(results), *vqa_setup,
                    f"task.files.annotations={missing}"],
           watch=[results], mentions=[str(missing), "file not found"])
