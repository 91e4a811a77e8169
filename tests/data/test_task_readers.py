"""Readers of the task formats: each fixture read back to the exact values, one-line errors.

Fixtures under tests/fixtures/tasks/ are small hand-made files in the published layouts. The
RefCOCO refs pickle is not committed: :func:`_py2_pickle` below writes it in the test, opcode
by opcode, the way Python 2's cPickle (protocol 2) wrote ``refs(unc).p`` (its ``str`` values
are byte strings).
"""

from __future__ import annotations

import json
import os
import pickle
import struct
from pathlib import Path
from typing import Any

import pytest

from vlp.data.formats.nlvr2 import nlvr2_image_names, read_nlvr2
from vlp.data.formats.refcoco import load_refs_pickle, read_refcoco
from vlp.data.formats.snli_ve import read_snli_ve
from vlp.data.formats.vcr import read_vcr, read_vcr_metadata, vcr_text
from vlp.data.formats.vqa import read_vqa, read_vqa_results, write_vqa_results
from vlp.data.task_records import (
    NLVR2Record,
    RefRecord,
    VCRMetadata,
    VERecord,
    VQAQuestion,
)
from vlp.errors import VlpError

TASKS = Path(__file__).resolve().parents[1] / "fixtures" / "tasks"
VQA_Q = TASKS / "vqa" / "v2_OpenEnded_mscoco_val2014_questions.json"
VQA_A = TASKS / "vqa" / "v2_mscoco_val2014_annotations.json"
SNLI_VE = TASKS / "snli_ve" / "snli_ve_dev.jsonl"
NLVR2 = TASKS / "nlvr2" / "dev.json"
INSTANCES = TASKS / "refcoco" / "instances.json"
VCR = TASKS / "vcr" / "val.jsonl"
VCR_META = (TASKS / "vcr" / "vcr1images" / "lsmdc_3015_CHARLIE_ST_CLOUD"
            / "3015_CHARLIE_ST_CLOUD_00.23.57.935-00.24.00.783@0.json")


def _one_line_error(excinfo: pytest.ExceptionInfo[VlpError], *parts: str) -> None:
    message = str(excinfo.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, message


def _edit_json(src: Path, dst: Path, edit: Any) -> Path:
    doc = json.loads(src.read_text())
    edit(doc)
    dst.write_text(json.dumps(doc))
    return dst


def _edit_lines(src: Path, dst: Path, index: int, edit: Any) -> Path:
    rows = [json.loads(line) for line in src.read_text().splitlines()]
    edit(rows[index])
    dst.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return dst


# --- VQA v2 -------------------------------------------------------------------------------


def test_vqa_round_trip() -> None:
    records = read_vqa(VQA_Q, VQA_A)
    assert [r.question_id for r in records] == [262148000, 262148001, 393225000, 393225001]
    assert records[0] == VQAQuestion(
        question_id=262148000, image_id=262148, question="Where is he looking?",
        answers=("down",) * 7 + ("at table", "skateboard", "table"), answer_type="other",
        question_type="none of the above", multiple_choice_answer="down")
    assert records[3].answers == ("2",) * 6 + ("two",) * 2 + ("3",) * 2
    assert (records[3].answer_type, records[3].question_type) == ("number", "how many")


def test_vqa_questions_only() -> None:
    records = read_vqa(VQA_Q)
    assert records[2] == VQAQuestion(393225000, 393225, "Is the bowl full?")
    assert records[2].answers == () and records[2].answer_type is None


def test_vqa_missing_field(tmp_path: Path) -> None:
    bad = _edit_json(VQA_A, tmp_path / "ann.json",
                     lambda d: d["annotations"][1].pop("answer_type"))
    with pytest.raises(VlpError) as e:
        read_vqa(VQA_Q, bad)
    assert str(e.value) == (f"{bad}: field 'annotations[1].answer_type': missing "
                            "(expected a string)")
    bad = _edit_json(VQA_A, tmp_path / "ann2.json",
                     lambda d: d["annotations"][0]["answers"][3].pop("answer"))
    with pytest.raises(VlpError) as e:
        read_vqa(VQA_Q, bad)
    _one_line_error(e, "annotations[0].answers[3].answer", "missing")


def test_vqa_id_mismatches(tmp_path: Path) -> None:
    def stray(d: dict[str, Any]) -> None:
        d["annotations"][2]["question_id"] = 1
    with pytest.raises(VlpError) as e:
        read_vqa(VQA_Q, _edit_json(VQA_A, tmp_path / "a.json", stray))
    _one_line_error(e, "annotations[2].question_id", "1 is not a question of")
    dropped = _edit_json(VQA_A, tmp_path / "b.json", lambda d: d["annotations"].pop(3))
    with pytest.raises(VlpError) as e:
        read_vqa(VQA_Q, dropped)
    _one_line_error(e, str(VQA_Q), "questions[3].question_id", "393225001 has no annotation")

    def other_image(d: dict[str, Any]) -> None:
        d["annotations"][0]["image_id"] = 5
    with pytest.raises(VlpError) as e:
        read_vqa(VQA_Q, _edit_json(VQA_A, tmp_path / "c.json", other_image))
    _one_line_error(e, "annotations[0].image_id", "differs from image_id 262148")


def test_vqa_results_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "out" / "results.json"
    write_vqa_results(path, {262148000: "down", 393225001: "2"})
    assert json.loads(path.read_text()) == [{"question_id": 262148000, "answer": "down"},
                                            {"question_id": 393225001, "answer": "2"}]
    assert read_vqa_results(path) == {262148000: "down", 393225001: "2"}
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]  # no temp left
    path.write_text('[{"question_id": 1, "answer": "a"}, {"question_id": 1, "answer": "b"}]')
    with pytest.raises(VlpError) as e:
        read_vqa_results(path)
    _one_line_error(e, "[1].question_id", "duplicate question id 1")
    with pytest.raises(VlpError, match="expected a string"):
        write_vqa_results(path, {1: None})


# --- SNLI-VE ------------------------------------------------------------------------------


def test_snli_ve_round_trip() -> None:
    records = read_snli_ve(SNLI_VE)
    assert records == [
        VERecord("2248275918.jpg#2r1e", "2248275918.jpg", "Animals are outside.", "entailment",
                 "Two dogs run through the snow."),
        VERecord("2248275918.jpg#2r1n", "2248275918.jpg", "The dogs are racing each other.",
                 "neutral", "Two dogs run through the snow."),
        VERecord("2248275918.jpg#2r1c", "2248275918.jpg", "The cats sleep indoors.",
                 "contradiction", "Two dogs run through the snow."),
    ]


def test_snli_ve_errors(tmp_path: Path) -> None:
    bad = _edit_lines(SNLI_VE, tmp_path / "ve.jsonl", 0, lambda r: r.pop("Flikr30kID"))
    with pytest.raises(VlpError) as e:
        read_snli_ve(bad)
    assert str(e.value) == f"{bad}: field 'line 1.Flikr30kID': missing (expected a string)"
    bad = _edit_lines(SNLI_VE, tmp_path / "ve2.jsonl", 2, lambda r: r.update(gold_label="-"))
    with pytest.raises(VlpError) as e:
        read_snli_ve(bad)
    _one_line_error(e, "line 3.gold_label", "entailment, neutral, contradiction", "'-'")
    bad.write_text(SNLI_VE.read_text() + "{not json\n")
    with pytest.raises(VlpError) as e:
        read_snli_ve(bad)
    _one_line_error(e, "line 4", "invalid JSON")


# --- NLVR2 --------------------------------------------------------------------------------


def test_nlvr2_round_trip() -> None:
    records = read_nlvr2(NLVR2)
    assert records[0] == NLVR2Record("dev-850-0-0", "One image shows exactly two dogs on grass.",
                                     True, "dev-850-0-img0.png", "dev-850-0-img1.png")
    assert [r.label for r in records] == [True, False, True, False]
    assert records[2].left_image == "dev-850-2-img0.png"
    assert nlvr2_image_names("test1-0-1-0") == ("test1-0-1-img0.png", "test1-0-1-img1.png")


def test_nlvr2_image_overrides(tmp_path: Path) -> None:
    path = _edit_lines(NLVR2, tmp_path / "dev.json", 1,
                       lambda r: r.update(left_image="a7.jpg", right_image="b8.jpg"))
    record = read_nlvr2(path)[1]
    assert (record.left_image, record.right_image) == ("a7.jpg", "b8.jpg")
    # the store is keyed by the digits a name ends in: a name without them is refused
    path = _edit_lines(NLVR2, tmp_path / "dev2.json", 1, lambda r: r.update(left_image="a.jpg"))
    with pytest.raises(VlpError) as e:
        read_nlvr2(path)
    _one_line_error(e, str(path), "line 2.left_image", "ending in its numeric id", "'a.jpg'")


def test_nlvr2_errors(tmp_path: Path) -> None:
    bad = _edit_lines(NLVR2, tmp_path / "a.json", 3, lambda r: r.pop("label"))
    with pytest.raises(VlpError) as e:
        read_nlvr2(bad)
    assert str(e.value) == f"{bad}: field 'line 4.label': missing (expected a string)"
    bad = _edit_lines(NLVR2, tmp_path / "b.json", 0, lambda r: r.update(label=True))
    with pytest.raises(VlpError) as e:
        read_nlvr2(bad)
    _one_line_error(e, "line 1.label", "expected a string, found a boolean")
    bad = _edit_lines(NLVR2, tmp_path / "c.json", 0, lambda r: r.update(identifier="dev-850"))
    with pytest.raises(VlpError) as e:
        read_nlvr2(bad)
    _one_line_error(e, "line 1.identifier", "split-set_id-pair_id-sentence_id")


# --- RefCOCO ------------------------------------------------------------------------------


def _py2_pickle(obj: Any) -> bytes:
    """Protocol-2 bytes as Python 2 wrote them: ``str`` as SHORT_BINSTRING / BINSTRING."""
    out = bytearray(b"\x80\x02")

    def emit(x: Any) -> None:
        if isinstance(x, dict):
            out.extend(b"}(")
            for k, v in x.items():
                emit(k)
                emit(v)
            out.extend(b"u")
        elif isinstance(x, list):
            out.extend(b"](")
            for v in x:
                emit(v)
            out.extend(b"e")
        elif isinstance(x, str):
            data = x.encode("utf-8")  # a Python 2 byte string
            head = b"U" + bytes([len(data)]) if len(data) < 256 else \
                b"T" + struct.pack("<i", len(data))
            out.extend(head + data)
        elif isinstance(x, float):
            out.extend(b"G" + struct.pack(">d", x))
        elif isinstance(x, int):
            out.extend(b"K" + bytes([x]) if 0 <= x < 256 else b"J" + struct.pack("<i", x))
        else:
            raise TypeError(type(x))

    emit(obj)
    out.extend(b".")
    return bytes(out)


def _refs() -> list[dict[str, Any]]:
    # the layout of refcoco/refs(unc).p; the boxes come from instances.json
    return [
        {"sent_ids": [0, 1], "file_name": "COCO_train2014_000000581857_16.jpg",
         "ann_id": 1719310, "ref_id": 0, "image_id": 581857, "split": "train",
         "sentences": [
             {"tokens": ["the", "lady", "with", "the", "blue", "shirt"],
              "raw": "THE LADY WITH THE BLUE SHIRT", "sent_id": 0,
              "sent": "the lady with the blue shirt"},
             {"tokens": ["lady", "in", "blue"], "raw": "lady in blue café", "sent_id": 1,
              "sent": "lady in blue cafe"}],
         "category_id": 1},
        {"sent_ids": [2], "file_name": "COCO_train2014_000000581857_17.jpg",
         "ann_id": 1720025, "ref_id": 1, "image_id": 581857, "split": "testA",
         "sentences": [{"tokens": ["left", "guy"], "raw": "left guy", "sent_id": 2,
                        "sent": "left guy"}],
         "category_id": 1},
        {"sent_ids": [3], "file_name": "COCO_train2014_000000000049_5.jpg",
         "ann_id": 55321, "ref_id": 2, "image_id": 49, "split": "testB",
         "sentences": [{"tokens": ["brown", "horse"], "raw": "brown horse", "sent_id": 3,
                        "sent": "brown horse"}],
         "category_id": 19},
    ]


EXPECTED_REFS = [
    RefRecord(0, 581857, 1719310, "train",
              ("THE LADY WITH THE BLUE SHIRT", "lady in blue café"), (0, 1),
              (103.93, 299.99, 134.22, 177.42), 1),
    RefRecord(1, 581857, 1720025, "testA", ("left guy",), (2,), (0.0, 14.55, 190.71, 625.45), 1),
    RefRecord(2, 49, 55321, "testB", ("brown horse",), (3,), (12.5, 210.0, 147.5, 120.0), 19),
]


def test_refcoco_python2_pickle_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "refs(unc).p"
    path.write_bytes(_py2_pickle(_refs()))
    # the opcode writer really produces byte strings, as Python 2 did
    assert isinstance(pickle.loads(path.read_bytes(), encoding="bytes")[0][b"split"], bytes)
    assert read_refcoco(path, INSTANCES) == EXPECTED_REFS
    assert read_refcoco(path, INSTANCES, split="testA") == EXPECTED_REFS[1:2]


def test_refcoco_python3_pickle(tmp_path: Path) -> None:
    path = tmp_path / "refs(umd).p"
    path.write_bytes(pickle.dumps(_refs(), protocol=2))
    assert read_refcoco(path, INSTANCES) == EXPECTED_REFS


class _Exploit:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.makedirs, (str(self.target),)


def test_refcoco_pickle_with_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps([{"ref_id": 0, "payload": _Exploit(marker)}], protocol=2))
    with pytest.raises(VlpError) as e:
        read_refcoco(path, INSTANCES)
    _one_line_error(e, str(path), "refused to unpickle", "os.makedirs")
    assert not marker.exists()
    path.write_bytes(pickle.dumps(os.system, protocol=2))
    with pytest.raises(VlpError) as e:
        load_refs_pickle(path)
    _one_line_error(e, "refused to unpickle", "system")


def test_refcoco_errors(tmp_path: Path) -> None:
    refs = _refs()
    del refs[1]["ann_id"]
    path = tmp_path / "refs(unc).p"
    path.write_bytes(_py2_pickle(refs))
    with pytest.raises(VlpError) as e:
        read_refcoco(path, INSTANCES)
    assert str(e.value) == f"{path}: field '[1].ann_id': missing (expected an integer)"
    refs = _refs()
    refs[2]["ann_id"] = 7
    path.write_bytes(_py2_pickle(refs))
    with pytest.raises(VlpError) as e:
        read_refcoco(path, INSTANCES)
    _one_line_error(e, "[2].ann_id", "7 is not an annotation id of instances.json")
    path.write_bytes(b"\x80\x02not a pickle at all")
    with pytest.raises(VlpError) as e:
        read_refcoco(path, INSTANCES)
    _one_line_error(e, "not a readable pickle")


# --- VCR ----------------------------------------------------------------------------------


def test_vcr_round_trip() -> None:
    records = read_vcr(VCR)
    r = records[0]
    assert r.annot_id == "val-0"
    stem = "lsmdc_3015_CHARLIE_ST_CLOUD/3015_CHARLIE_ST_CLOUD_00.23.57.935-00.24.00.783@0"
    assert (r.image, r.metadata) == (f"{stem}.jpg", f"{stem}.json")
    assert r.objects == ("person", "person", "person", "car")
    assert r.question == ("Is", (2,), "happy", "to", "see", (0,), "?")
    assert r.answers[3] == ((3,), "belongs", "to", (2,), ".")
    assert r.answers[2] == ("Yes", "because", (0, 1), "are", "her", "friends", ".")
    assert len(r.answers) == len(r.rationales) == 4
    assert (r.answer_label, r.rationale_label) == (1, 0)
    assert (records[1].annot_id, records[1].answer_label, records[1].rationale_label) == \
        ("val-1", 0, 1)


def test_vcr_text() -> None:
    r, s = read_vcr(VCR)
    assert vcr_text(r.question, r.objects) == "Is Jessie happy to see Casey ?"
    assert vcr_text(r.answers[3], r.objects) == "car belongs to Jessie ."
    assert vcr_text(s.question, s.objects) == "What will Casey and Riley do next ?"
    assert vcr_text(s.question, s.objects, person_names=None) == \
        "What will person0 and person1 do next ?"
    with pytest.raises(VlpError, match="out of range"):
        vcr_text(["a", (9,)], r.objects)


def test_vcr_test_split_has_no_labels(tmp_path: Path) -> None:
    def unlabel(row: dict[str, Any]) -> None:
        for key in ("answer_label", "rationale_label"):
            row.pop(key)
    path = _edit_lines(VCR, tmp_path / "test.jsonl", 0, unlabel)
    r = read_vcr(path)[0]
    assert (r.answer_label, r.rationale_label) == (None, None)


def test_vcr_errors(tmp_path: Path) -> None:
    bad = _edit_lines(VCR, tmp_path / "a.jsonl", 1, lambda r: r.pop("img_fn"))
    with pytest.raises(VlpError) as e:
        read_vcr(bad)
    assert str(e.value) == f"{bad}: field 'line 2.img_fn': missing (expected a string)"
    bad = _edit_lines(VCR, tmp_path / "b.jsonl", 0, lambda r: r["question"].append([4]))
    with pytest.raises(VlpError) as e:
        read_vcr(bad)
    _one_line_error(e, "line 1.question[7]", "object index 4 out of range")
    bad = _edit_lines(VCR, tmp_path / "c.jsonl", 0, lambda r: r["answer_choices"].pop())
    with pytest.raises(VlpError) as e:
        read_vcr(bad)
    _one_line_error(e, "line 1.answer_choices", "expected 4 choices, found 3")


def test_vcr_metadata(tmp_path: Path) -> None:
    meta = read_vcr_metadata(VCR_META)
    assert meta == VCRMetadata(
        boxes=((955.0, 52.6, 1460.3, 799.2, 0.9991), (1496.4, 120.0, 1850.7, 780.5, 0.9973),
               (330.2, 88.1, 760.9, 801.0, 0.9925), (0.0, 420.4, 310.6, 790.2, 0.8712)),
        width=1920, height=816, names=("person", "person", "person", "car"))
    bad = _edit_json(VCR_META, tmp_path / "m.json", lambda d: d.pop("width"))
    with pytest.raises(VlpError) as e:
        read_vcr_metadata(bad)
    assert str(e.value) == f"{bad}: field 'width': missing (expected an integer)"
    bad = _edit_json(VCR_META, tmp_path / "n.json", lambda d: d["boxes"][1].pop())
    with pytest.raises(VlpError) as e:
        read_vcr_metadata(bad)
    _one_line_error(e, "boxes[1]", "expected [x1, y1, x2, y2, score]")


# --- defects from the outside tester (issue 11) ---------------------------------------------


def test_snli_ve_image_without_digits_names_file_line_field(tmp_path: Path) -> None:
    bad = _edit_lines(SNLI_VE, tmp_path / "ve.jsonl", 1, lambda r: r.update(Flikr30kID="abc.jpg"))
    with pytest.raises(VlpError) as e:
        read_snli_ve(bad)
    _one_line_error(e, str(bad), "line 2.Flikr30kID", "'abc.jpg'")


def test_vqa_answer_counts_other_than_ten_warn_once(tmp_path: Path) -> None:
    from vlp.errors import DataWarning

    def shorten(d: dict[str, Any]) -> None:
        for ann in d["annotations"][:3]:
            ann["answers"].pop()
    bad = _edit_json(VQA_A, tmp_path / "a.json", shorten)
    with pytest.warns(DataWarning) as caught:
        assert len(read_vqa(VQA_Q, bad)) == 4
    lines = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    assert len(lines) == 1, lines
    assert "3 of 4 questions have 9 answers" in lines[0] and "262148000" in lines[0]


def test_torn_last_line_and_empty_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "dev.json"
    text = NLVR2.read_text()
    path.write_text(text[:len(text) - 20])
    with pytest.raises(VlpError) as e:
        read_nlvr2(path)
    _one_line_error(e, "line 4", "cut short")
    path.write_text("\n\n")
    with pytest.raises(VlpError) as e:
        read_nlvr2(path)
    _one_line_error(e, str(path), "empty file")
