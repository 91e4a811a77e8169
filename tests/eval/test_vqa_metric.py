"""VQA v2 accuracy against hand-worked cases and the official script's quirks.

Reference: GT-Vision-Lab/VQA, PythonEvaluationTools/vqaEvaluation/vqaEval.py (master).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vlp.data.formats.vqa import read_vqa
from vlp.data.task_records import VQAQuestion
from vlp.errors import VlpError
from vlp.eval.vqa import (
    answer_targets,
    build_answer_vocab,
    evaluate_vqa,
    normalize_answer,
    process_digit_article,
    process_punctuation,
    round_py2,
    vqa_score,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tasks" / "vqa"


# --- one question -------------------------------------------------------------------------


def test_disagreeing_annotators_leave_one_out() -> None:
    answers = ["yes"] * 7 + ["no"] * 3
    # "no": each of the 3 "no" annotators left out leaves 2 matches → 2/3; each of the 7
    # "yes" annotators left out leaves all 3 → 1. (3 * 2/3 + 7 * 1) / 10 = 0.9
    assert vqa_score("no", answers) == pytest.approx(0.9)
    # "yes": at least 6 matches whoever is left out → 1
    assert vqa_score("yes", answers) == 1.0
    assert vqa_score("maybe", answers) == 0.0


def test_one_and_two_matches() -> None:
    answers = ["2"] * 2 + ["3"] * 8
    # "two" → "2" (the answers disagree, so it is processed). Left out a "2": 1 match → 1/3;
    # left out a "3": 2 matches → 2/3. (2 * 1/3 + 8 * 2/3) / 10 = 18/30 = 0.6
    assert vqa_score("two", answers) == pytest.approx(0.6)
    # one match only: (1 * 0 + 9 * 1/3) / 10 = 0.3
    assert vqa_score("red", ["red"] + ["blue"] * 9) == pytest.approx(0.3)


def test_number_words_merge_disagreeing_answers() -> None:
    # 2 say "2", 8 say "two": the set has 2 members, so every answer is processed and all ten
    # become "2"; either prediction then matches 9 others whoever is left out → 1
    answers = ["2"] * 2 + ["two"] * 8
    assert vqa_score("two", answers) == 1.0
    assert vqa_score("2", answers) == 1.0
    assert vqa_score("Two.", answers) == 1.0


def test_all_identical_answers_skip_processing_quirk() -> None:
    # all ten agree: only "\n"/"\t" → space and strip, nothing else, for both sides
    assert vqa_score("Yes.", ["yes"] * 10) == 0.0
    assert vqa_score("yes", ["yes"] * 10) == 1.0
    assert vqa_score(" yes\n", ["yes"] * 10) == 1.0
    assert vqa_score("2", ["two"] * 10) == 0.0
    assert vqa_score("a dog", ["dog"] * 10) == 0.0
    # strip runs before the set is taken: these ten agree too
    assert vqa_score("Yes.", ["yes"] * 9 + ["yes\t"]) == 0.0
    # one annotator differing by case switches processing on for everyone
    assert vqa_score("Yes.", ["yes"] * 9 + ["Yes"]) == 1.0


def test_articles_and_case() -> None:
    answers = ["dog"] * 6 + ["cat"] * 4
    assert vqa_score("a dog", answers) == 1.0
    assert vqa_score("The Dog", answers) == 1.0
    assert normalize_answer("an apple") == "apple"
    # an answer that is only an article becomes empty
    assert normalize_answer("the") == ""


@pytest.mark.parametrize(("raw", "expected"), [
    ("Yes.", "yes"),
    ("yes,", "yes"),  # lone comma → space, then split/join drops it
    ("dog's", "dog's"),  # the apostrophe is not in the list
    ("t-shirt", "t shirt"),  # no space next to '-': replaced by a space
    ("3.5", "3.5"),  # a period before a digit stays
    ("5.", "5"),
    (".5", ".5"),
    ("x.y.z", "xyz"),  # periods are deleted, not spaced
    ("1,000", "1000"),  # digit-comma-digit: every mark is deleted
    ("yes, sir!", "yes sir"),  # ", " → deleted; "!" not next to a space → space
    ("a-b -c", "ab c"),  # " -" in the original text: every '-' is deleted
    ("hello?", "hello"),
    ("red/blue", "red blue"),
    ("3:00", "3:00"),  # ':' is not in the list
    ("none", "0"),
    ("ten", "10"),
    ("eleven", "eleven"),
    ("dont", "don't"),
    ("Dont", "don't"),  # lower-cased before the table is looked up
    ("Im", "im"),  # capitalised keys of the table can never match
    ("somebody'd", "somebodyd"),  # the table maps this one backwards
    ("two  dogs\tplay", "2 dogs play"),
])
def test_normalize_answer(raw: str, expected: str) -> None:
    assert normalize_answer(raw) == expected


def test_period_strip_count_quirk() -> None:
    # re.UNICODE (32) is passed where count goes: at most 32 periods are deleted
    assert process_punctuation("." * 33) == "."
    assert process_punctuation("." * 32) == ""


def test_python2_details() -> None:
    # \d is ASCII under Python 2: an Arabic-Indic digit does not protect a period
    assert process_punctuation("\u0663.\u0665") == "\u0663\u0665"
    # one-to-one lower-casing
    assert process_digit_article("İ") == "i"


# --- training targets and vocabulary ------------------------------------------------------


def test_answer_targets_match_the_metric() -> None:
    answers = ["Red"] * 6 + ["dark red"] * 3 + ["a red one"]
    targets = answer_targets(answers)
    # "red": 6 matches → 1; "dark red": 3 → 0.9; "red 1" ("one" is a number word): 1 → 0.3
    assert targets == pytest.approx({"red": 1.0, "dark red": 0.9, "red 1": 0.3})
    for answer, score in targets.items():
        assert vqa_score(answer, answers) == score


def test_answer_targets_identical_and_empty() -> None:
    assert answer_targets(["Yes"] * 10) == {"Yes": 1.0}
    assert answer_targets([]) == {}


def test_build_answer_vocab() -> None:
    lists = [["yes"] * 10, ["no"] * 7 + ["yes"] * 3, ["2"] * 5 + ["two"] * 5, ["blue"] * 10]
    # counts: yes 13, 2 10 ("two" normalised), blue 10, no 7
    assert build_answer_vocab(lists) == ["yes", "2", "blue", "no"]
    assert build_answer_vocab(lists, min_count=10) == ["yes", "2", "blue"]
    with pytest.raises(VlpError, match="min_count"):
        build_answer_vocab(lists, min_count=0)


# --- whole evaluation ---------------------------------------------------------------------


def _fixture_questions() -> list[VQAQuestion]:
    return read_vqa(FIXTURES / "v2_OpenEnded_mscoco_val2014_questions.json",
                    FIXTURES / "v2_mscoco_val2014_annotations.json")


def test_evaluate_per_type_breakdown() -> None:
    predictions = {
        262148000: "Down.",  # 7 of 10 say "down" → 100
        262148001: "skateboard",  # 1 of 10 → 30
        393225000: "No",  # all ten say "no": no processing, "No" != "no" → 0
        393225001: "two",  # 2, 2, two, 3 mixed → processed → 8 × "2" → 100
    }
    m = evaluate_vqa(predictions, _fixture_questions())
    assert m.num_questions == 4
    assert m.per_question == {262148000: 100.0, 262148001: 30.0, 393225000: 0.0,
                              393225001: 100.0}
    assert m.overall == 57.5  # (1 + 0.3 + 0 + 1) / 4
    assert m.per_answer_type == {"other": 65.0, "yes/no": 0.0, "number": 100.0}
    assert m.per_question_type == {"none of the above": 100.0, "what is the": 30.0,
                                   "is the": 0.0, "how many": 100.0}


def test_evaluate_accepts_the_results_list() -> None:
    results = [{"question_id": 262148000, "answer": "down"},
               {"question_id": 262148001, "answer": "table"},
               {"question_id": 393225000, "answer": "no"},
               {"question_id": 393225001, "answer": "3"},
               # as the official loadRes: a later result for a question replaces the earlier
               {"question_id": 393225001, "answer": "2"}]
    assert evaluate_vqa(results, _fixture_questions()).overall == 100.0


def test_rounding_is_python2_round_half_away() -> None:
    # 97 of 800 right: 100 * 97 / 800 = 12.125 exactly; Python 2.7's round (the script's)
    # gives 12.13, Python 3's would give 12.12
    questions = [VQAQuestion(i, 1, "q", ("yes",) * 10, "yes/no", "is the", "yes")
                 for i in range(800)]
    preds = {i: "yes" if i < 97 else "no" for i in range(800)}
    m = evaluate_vqa(preds, questions)
    assert m.overall == 12.13
    assert round(12.125, 2) == 12.12  # what plain Python 3 rounding would have reported
    assert round_py2(2.675) == 2.67  # correctly rounded: 2.675 is below the tie in binary
    # per question: 100 * 0.3 is 30.000000000000004 before rounding
    one = [VQAQuestion(1, 1, "q", ("red",) + ("blue",) * 9, "other", "what color is", "blue")]
    assert evaluate_vqa({1: "red"}, one).per_question == {1: 30.0}


def test_missing_and_extra_predictions_are_errors() -> None:
    questions = _fixture_questions()
    preds = {q.question_id: "yes" for q in questions}
    del preds[393225000]
    with pytest.raises(VlpError, match="393225000") as e:
        evaluate_vqa(preds, questions)
    assert "\n" not in str(e.value)
    preds[393225000] = "no"
    preds[5] = "no"
    with pytest.raises(VlpError, match="question_id 5 is not an annotated question"):
        evaluate_vqa(preds, questions)


def test_bad_inputs_are_errors() -> None:
    questions = _fixture_questions()
    with pytest.raises(VlpError, match=r"\[1\]\.answer"):
        evaluate_vqa([{"question_id": 262148000, "answer": "x"}, {"question_id": 1}], questions)
    unannotated = [VQAQuestion(7, 1, "Is it?")]
    with pytest.raises(VlpError, match="question_id 7 has no annotator answers"):
        evaluate_vqa({7: "yes"}, unannotated)
    with pytest.raises(VlpError, match="no ground-truth answers"):
        vqa_score("yes", [])


def _official_accuracy(res_answer: str, gt_answers: list[str]) -> float:
    """The per-question loop of vqaEval.evaluate, step by step on answer dicts."""
    gts = [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1}
           for i, a in enumerate(gt_answers)]
    for d in gts:
        d["answer"] = str(d["answer"]).replace("\n", " ").replace("\t", " ").strip()
    res = res_answer.replace("\n", " ").replace("\t", " ").strip()
    if len({d["answer"] for d in gts}) > 1:
        for d in gts:
            d["answer"] = process_digit_article(process_punctuation(str(d["answer"])))
        res = process_digit_article(process_punctuation(res))
    accs = []
    for d in gts:
        others = [o for o in gts if o != d]
        matching = [o for o in others if o["answer"] == res]
        accs.append(min(1, float(len(matching)) / 3))
    return float(sum(accs)) / len(accs)


def test_matches_the_official_loop_on_random_questions() -> None:
    pool = ["yes", "Yes", "yes.", " yes", "no", "2", "two", "Two", "a dog", "dog", "t-shirt",
            "t shirt", "1,000", "1000", "dont", "don't", "none", "0", "red", "red\n"]
    rng = random.Random(0)
    questions, preds = [], {}
    for qid in range(300):
        choices = rng.sample(pool, rng.randint(1, 4))
        answers = tuple(rng.choice(choices) for _ in range(10))
        questions.append(VQAQuestion(qid, 0, "q", answers, "other", "what", answers[0]))
        preds[qid] = rng.choice(pool)
        assert vqa_score(preds[qid], answers) == _official_accuracy(preds[qid], list(answers))
    m = evaluate_vqa(preds, questions)
    total = 0.0
    for q in questions:
        total += _official_accuracy(preds[q.question_id], list(q.answers))
    assert m.overall == round_py2(100 * total / len(questions))


def test_numpy_question_ids_are_accepted() -> None:
    questions = [VQAQuestion(3, 1, "q", ("yes",) * 10, "yes/no", "is the", "yes")]
    assert evaluate_vqa({np.int64(3): "yes"}, questions).overall == 100.0
    with pytest.raises(VlpError, match="expected an integer, found a number"):
        evaluate_vqa([{"question_id": 3.0, "answer": "yes"}], questions)


# --- scoring a split through the task (issue 11) -------------------------------------------


def _vqa_split(tmp_path: Path, limit: int) -> Any:
    """A VQAData of the fixture split that read its files but built no batches."""
    from vlp.tasks.vqa import VQAData

    fixtures = Path(__file__).resolve().parents[1] / "fixtures" / "tasks" / "vqa"
    data = VQAData.__new__(VQAData)
    data.files = {"questions": fixtures / "v2_OpenEnded_mscoco_val2014_questions.json",
                  "annotations": fixtures / "v2_mscoco_val2014_annotations.json"}
    data.split = "val"
    data.all_records = read_vqa(data.files["questions"], data.files["annotations"])
    data.records = data.all_records[:limit]
    return data


def test_results_beyond_eval_limit_are_scored(tmp_path: Path) -> None:
    data = _vqa_split(tmp_path, limit=2)
    answers = {q.question_id: q.multiple_choice_answer for q in data.all_records}
    metrics = data.score(answers)
    assert metrics["vqa_acc"] == 100.0 and metrics["vqa/scored"] == 4.0
    with pytest.raises(VlpError, match="none of the questions of split 'val'"):
        data.score({**answers, 5: "yes"})


def test_partial_results_warn_and_score_what_they_name(tmp_path: Path) -> None:
    from vlp.errors import DataWarning

    data = _vqa_split(tmp_path, limit=4)
    first = data.all_records[0]
    with pytest.warns(DataWarning, match="no prediction for 3 of the 4 questions"):
        metrics = data.score({first.question_id: first.multiple_choice_answer})
    assert metrics["vqa/scored"] == 1.0


def test_missing_annotations_file_is_named(tmp_path: Path) -> None:
    data = _vqa_split(tmp_path, limit=4)
    data.files = {**data.files, "annotations": tmp_path / "gone.json"}
    with pytest.raises(VlpError) as e:
        data.score({data.all_records[0].question_id: "yes"})
    assert str(e.value).startswith(f"{tmp_path / 'gone.json'}: file not found")
