"""The world's task files: published formats, labels re-derived from the scenes, determinism.

Every text is parsed here by its own patterns and judged with the scene's semantics
(:meth:`Scene.relation`, :meth:`Scene.bigger`, counts), independently of how it was made.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from vlp.data.formats.coco import read_coco_captions, read_coco_instances
from vlp.data.formats.karpathy import read_karpathy
from vlp.world.files import file_name
from vlp.world.make import make_world
from vlp.world.scene import Scene, WorldObject, load_scenes
from vlp.world.tasks.snli_ve import UNDEPICTED, UNDEPICTED_BETWEEN
from vlp.world.tasks.vqa import normalize_answer
from vlp.world.vocab import COLOURS, NUMBER_WORDS, PLURALS, SHAPES, SIZES, category_id

N_IMAGES = 40
SEED = 5
SPLITS = ("train", "val", "test")
DEV = {"train": "train", "val": "dev", "test": "test"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_world(tmp_path_factory.mktemp("w") / "world", N_IMAGES, seed=SEED)


@pytest.fixture(scope="module")
def scenes(world: Path) -> dict[int, Scene]:
    return load_scenes(world)


@pytest.fixture(scope="module")
def splits(world: Path) -> dict[int, str]:
    return {im.image_id: im.split
            for im in read_karpathy(world / "annotations" / "dataset_world.json")}


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _image_id(name: str) -> int:
    m = re.fullmatch(r"world_(\d{12})\.png", name)
    assert m, name
    return int(m[1])


# --- phrases, parsed and judged here -------------------------------------------------------------

_COLOUR = "|".join(COLOURS)
_SHAPE = "|".join(SHAPES)
_SIZE = "|".join(SIZES)
_PLURAL = "|".join(PLURALS.values())
_NUM = "|".join(NUMBER_WORDS)
_THE = rf"the (?:(?:{_SIZE}) )?(?:(?:{_COLOUR}) )?(?:{_SHAPE})"
_AN = rf"an? (?:(?:{_SIZE}) )?(?:(?:{_COLOUR}) )?(?:{_SHAPE})"
_REL = "to the left of|to the right of|above|below"
_REL_NAMES = {"to the left of": "left of", "to the right of": "right of", "above": "above",
              "below": "below", "left of": "left of", "right of": "right of"}
_OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


def _fits(scene: Scene, phrase: str) -> list[WorldObject]:
    """The objects a noun phrase ("a small red circle", "the circle") can refer to."""
    words = phrase.split()[1:]
    size = words.pop(0) if words[0] in SIZES else None
    colour = words.pop(0) if words[0] in COLOURS else None
    assert len(words) == 1 and words[0] in SHAPES, phrase
    return [o for o in scene.objects if o.shape == words[0]
            and colour in (None, o.colour) and size in (None, o.size)]


def _one(scene: Scene, phrase: str) -> WorldObject:
    found = _fits(scene, phrase)
    assert len(found) == 1, f"{phrase!r} does not pick out one object"
    return found[0]


def _shape_of(noun: str) -> str:
    return noun if noun in SHAPES else next(s for s, p in PLURALS.items() if p == noun)


def _count(scene: Scene, noun: str) -> int:
    """Objects fitting "circles", "red shapes", "shapes", "small shape"…"""
    words = noun.split()
    if words[-1] in ("shape", "shapes"):
        colour = words[0] if words[0] in COLOURS else None
        size = words[0] if words[0] in SIZES else None
        return sum(colour in (None, o.colour) and size in (None, o.size) for o in scene.objects)
    return sum(o.shape == _shape_of(words[-1]) for o in scene.objects)


def _plainly_related(scene: Scene, a: WorldObject, rel: str, b: WorldObject) -> bool:
    """True if ``rel`` holds; False if the reverse holds; never anything too close to call."""
    held = scene.relation(a, b)
    if rel in held:
        return True
    assert _OPPOSITE[rel] in held, f"{rel} is neither true nor plainly false"
    return False


# --- the Scene queries the tasks use ------------------------------------------------------------

def test_scene_queries_for_tasks() -> None:
    a = WorldObject("circle", "red", "small", (2, 2, 11, 11))
    b = WorldObject("circle", "blue", "large", (40, 2, 58, 20))
    c = WorldObject("square", "blue", "medium", (20, 40, 33, 53))
    e = WorldObject("star", "green", "medium", (30, 25, 43, 38))  # under b, reaching left of it
    scene = Scene((a, b, c), 64)
    assert scene.attribute_description(a, omit="colour") == "the small circle"
    assert scene.attribute_description(b, omit="size") == "the blue circle"
    assert scene.attribute_description(c, omit="colour") == "the square"
    assert scene.sole_related(b, "left of", scene.objects_matching("circle")) is a
    assert scene.sole_related(b, "left of") is None  # the square is left of it too
    crowded = Scene((a, b, c, e), 64)
    assert "left of" not in crowded.relation(e, b) and crowded.reaches_beyond(e, b, "left of")
    assert crowded.sole_related(b, "left of", [a, e]) is None  # e is nearly left of b
    assert scene.referring_expressions(a) == [
        "the red circle", "the small circle", "the small red circle",
        "the circle left of the blue circle", "the circle left of the square",
        "the red circle above the square"]
    assert Scene((a, WorldObject("circle", "red", "small", (40, 2, 49, 11))),
                 64).referring_expressions(a) == []


# --- VQA v2 --------------------------------------------------------------------------------------

def _vqa_answer(scene: Scene, question: str) -> str:
    """The true answer to a world question, derived from the scene."""
    yes_no = {True: "yes", False: "no"}
    if m := re.fullmatch(rf"Is there ({_AN})\?", question):
        return yes_no[bool(_fits(scene, m[1]))]
    if m := re.fullmatch(rf"Is ({_THE}) ({_REL}) ({_THE})\?", question):
        a, b = _one(scene, m[1]), _one(scene, m[3])
        return yes_no[_plainly_related(scene, a, _REL_NAMES[m[2]], b)]
    if m := re.fullmatch(rf"Is ({_THE}) bigger than ({_THE})\?", question):
        a, b = _one(scene, m[1]), _one(scene, m[2])
        assert a.size != b.size
        return yes_no[scene.bigger(a, b)]
    if m := re.fullmatch(rf"How many ((?:(?:{_COLOUR}|{_SIZE}) )?shapes|{_PLURAL}) are there\?",
                         question):
        return str(_count(scene, m[1]))
    if m := re.fullmatch(rf"What color is ({_THE})\?", question):
        assert not set(m[1].split()) & set(COLOURS)
        return _one(scene, m[1]).colour
    if m := re.fullmatch(rf"What size is ({_THE})\?", question):
        assert not set(m[1].split()) & set(SIZES)
        return _one(scene, m[1]).size
    if m := re.fullmatch(rf"What shape is ({_REL}) ({_THE})\?", question):
        landmark = _one(scene, m[2])
        found = [o for o in scene.objects if _REL_NAMES[m[1]] in scene.relation(o, landmark)]
        assert len(found) == 1, question
        return found[0].shape
    raise AssertionError(f"question matches no template: {question!r}")


def _normalised(answer: str) -> str:
    """The test's own reading of an annotator's answer (case, spaces, full stop, article,
    number word)."""
    words = answer.strip().lower().rstrip(".").split()
    words = [str(NUMBER_WORDS.index(w)) if w in NUMBER_WORDS else w for w in words]
    return " ".join(w for w in words if w not in ("a", "an", "the"))


def _vqa(world: Path) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    found = []
    for split in SPLITS:
        questions = _json(world / "annotations" / f"vqa_{split}_questions.json")
        annotations = _json(world / "annotations" / f"vqa_{split}_annotations.json")
        assert {k: questions[k] for k in ("task_type", "data_type", "data_subtype")} == \
            {"task_type": "Open-Ended", "data_type": "world", "data_subtype": split}
        assert {"info", "license", "questions"} <= questions.keys()
        assert annotations.keys() == {"info", "license", "data_type", "data_subtype",
                                      "annotations"}
        assert len(questions["questions"]) == len(annotations["annotations"])
        for q, a in zip(questions["questions"], annotations["annotations"], strict=True):
            assert q.keys() == {"image_id", "question", "question_id"}
            assert a.keys() == {"question_type", "multiple_choice_answer", "answers",
                                "image_id", "answer_type", "question_id"}
            assert (q["question_id"], q["image_id"]) == (a["question_id"], a["image_id"])
            found.append((split, q, a))
    return found


def test_vqa_answers_are_true(world: Path, scenes: dict[int, Scene],
                              splits: dict[int, str]) -> None:
    entries = _vqa(world)
    assert len({q["question_id"] for _, q, _ in entries}) == len(entries)
    per_image = Counter(q["image_id"] for _, q, _ in entries)
    assert set(per_image) == set(scenes) and 4 <= sum(per_image.values()) / N_IMAGES <= 5
    for split, q, a in entries:
        assert splits[q["image_id"]] == split
        answer = _vqa_answer(scenes[q["image_id"]], q["question"])
        assert a["multiple_choice_answer"] == answer, q["question"]
        assert q["question"].lower().startswith(a["question_type"] + " ")
        expected_type = ("yes/no" if answer in ("yes", "no") else
                         "number" if answer.isdigit() else "other")
        assert a["answer_type"] == expected_type


def test_vqa_kinds_and_balance(world: Path) -> None:
    entries = [a for _, _, a in _vqa(world)]
    types = Counter(a["answer_type"] for a in entries)
    assert types["yes/no"] >= 0.3 * len(entries) and types["number"] >= 0.15 * len(entries)
    assert types["other"] >= 0.3 * len(entries)
    yes_no = Counter(a["multiple_choice_answer"] for a in entries if a["answer_type"] == "yes/no")
    assert abs(yes_no["yes"] - yes_no["no"]) <= 0.15 * types["yes/no"]
    assert {"is there a", "is the", "how many", "what color is the", "what shape is",
            "what size is the"} <= {a["question_type"] for a in entries}


def test_vqa_annotators_agree_mostly(world: Path) -> None:
    entries = [a for _, _, a in _vqa(world)]
    disagreeing = variants = 0
    for a in entries:
        answers = a["answers"]
        assert [x["answer_id"] for x in answers] == list(range(1, 11))
        assert {x["answer_confidence"] for x in answers} <= {"yes", "maybe", "no"}
        read = Counter(_normalised(x["answer"]) for x in answers)
        # VQA's multiple-choice answer: the most common answer after normalisation
        assert read.most_common(1)[0] == (a["multiple_choice_answer"], max(read.values()))
        assert read[a["multiple_choice_answer"]] >= 6
        assert all(normalize_answer(x["answer"]) == _normalised(x["answer"]) for x in answers)
        disagreeing += len(read) > 1
        variants += any(x["answer"] != _normalised(x["answer"]) for x in answers)
    assert 0.03 * len(entries) <= disagreeing <= 0.35 * len(entries)
    assert variants >= 0.3 * len(entries)


def test_vqa_normalisation_matches_the_official_rules() -> None:
    for raw, read in [("Yes.", "yes"), ("yes ", "yes"), ("two", "2"), ("a circle", "circle"),
                      ("An orange", "orange"), ("2.", "2"), ("3.5", "3.5"), ("none", "0"),
                      ("red,blue", "red blue"), ("left-right", "left right")]:
        assert normalize_answer(raw) == read, raw


# --- SNLI-VE -------------------------------------------------------------------------------------

_UNDEPICTED = "|".join(UNDEPICTED)
_BETWEEN = "|".join(UNDEPICTED_BETWEEN)
_COUNTED = rf"(?:(?:{_COLOUR}) )?shapes?|{_PLURAL}|{_SHAPE}"


def _ve_fact(scene: Scene, h: str) -> bool:
    """Whether an observable hypothesis (lower case, no full stop) is true of the scene."""
    if m := re.fullmatch(rf"there are no ({_COUNTED})", h):
        return _count(scene, m[1]) == 0
    if m := re.fullmatch(rf"there (?:is|are) exactly ({_NUM}) ({_COUNTED})", h):
        return _count(scene, m[2]) == NUMBER_WORDS.index(m[1])
    if m := re.fullmatch(rf"the ({_SHAPE}) is ({_COLOUR})", h):
        return _one(scene, f"the {m[1]}").colour == m[2]
    if m := re.fullmatch(rf"there is ({_AN})", h):
        return bool(_fits(scene, m[1]))
    if m := re.fullmatch(rf"({_AN}) is ({_REL}) ({_AN})", h):
        return any(_REL_NAMES[m[2]] in scene.relation(a, b)
                   for a in _fits(scene, m[1]) for b in _fits(scene, m[3]))
    if m := re.fullmatch(rf"({_THE}) is ({_REL}) ({_THE})", h):
        return _plainly_related(scene, _one(scene, m[1]), _REL_NAMES[m[2]], _one(scene, m[3]))
    if m := re.fullmatch(rf"({_AN}) is bigger than ({_AN})", h):
        return any(scene.bigger(a, b) for a in _fits(scene, m[1]) for b in _fits(scene, m[2]))
    if m := re.fullmatch(rf"({_THE}) is bigger than ({_THE})", h):
        a, b = _one(scene, m[1]), _one(scene, m[2])
        assert a.size != b.size
        return scene.bigger(a, b)
    raise AssertionError(f"hypothesis matches no template: {h!r}")


def _ve_label(scene: Scene, hypothesis: str) -> str:
    """The label a hypothesis has against the scene (see the rules in vlp.world.tasks.snli_ve)."""
    assert hypothesis[0].isupper() and hypothesis.endswith(".")
    h = hypothesis[0].lower() + hypothesis[1:-1]
    if m := re.fullmatch(rf"({_AN}) (?:{_UNDEPICTED})", h):
        return "neutral" if _fits(scene, m[1]) else "contradiction"
    if m := re.fullmatch(rf"({_AN}) (?:{_BETWEEN}) ({_AN})", h):
        assert _fits(scene, m[1]) and _fits(scene, m[2])  # a neutral names only what is there
        return "neutral"
    return "entailment" if _ve_fact(scene, h) else "contradiction"


def test_snli_ve_labels_follow_the_scene(world: Path, scenes: dict[int, Scene],
                                         splits: dict[int, str]) -> None:
    captions: dict[int, list[str]] = defaultdict(list)
    for r in read_coco_captions(world / "annotations" / "captions.json"):
        captions[r.image_id].append(r.caption)
    labels: Counter[str] = Counter()
    pair_ids = set()
    for split in SPLITS:
        for r in _jsonl(world / "annotations" / f"snli_ve_{DEV[split]}.jsonl"):
            assert {"Flikr30kID", "gold_label", "sentence1", "sentence2", "pairID",
                    "captionID"} <= r.keys()
            image_id = _image_id(r["Flikr30kID"])
            assert splits[image_id] == split
            name, k = r["captionID"].split("#")
            assert name == r["Flikr30kID"] and captions[image_id][int(k)] == r["sentence1"]
            assert r["pairID"] == f"{r['captionID']}r1{r['gold_label'][0]}"
            pair_ids.add(r["pairID"])
            assert _ve_label(scenes[image_id], r["sentence2"]) == r["gold_label"], r
            labels[r["gold_label"]] += 1
    assert sum(labels.values()) == len(pair_ids) >= 5 * N_IMAGES
    assert set(labels) == {"entailment", "neutral", "contradiction"}
    assert max(labels.values()) - min(labels.values()) <= 0.05 * sum(labels.values())


# --- NLVR2 ---------------------------------------------------------------------------------------

def _nlvr2_truth(left: Scene, right: Scene, s: str) -> bool:
    side = {"left": left, "right": right}
    if m := re.fullmatch(rf"The (left|right) image contains exactly ({_NUM}) "
                         rf"({_SHAPE}|{_PLURAL})\.", s):
        return _count(side[m[1]], m[3]) == NUMBER_WORDS.index(m[2])
    if m := re.fullmatch(rf"There are more ((?:{_COLOUR}) shapes|{_PLURAL}) in the (left|right) "
                         r"image than in the (left|right) image\.", s):
        assert m[2] != m[3]
        return _count(side[m[2]], m[1]) > _count(side[m[3]], m[1])
    if m := re.fullmatch(r"The (left|right) image contains more shapes than the (left|right) "
                         r"image\.", s):
        return len(side[m[1]].objects) > len(side[m[2]].objects)
    if m := re.fullmatch(rf"(Both images contain|Exactly one image contains|Neither image "
                         rf"contains) ({_AN})\.", s):
        having = bool(_fits(left, m[2])) + bool(_fits(right, m[2]))
        return having == {"Both": 2, "Exactly": 1, "Neither": 0}[m[1].split()[0]]
    if m := re.fullmatch(rf"There (?:is|are) exactly ({_NUM}) ({_SHAPE}|{_PLURAL}) in the two "
                         r"images together\.", s):
        return _count(left, m[2]) + _count(right, m[2]) == NUMBER_WORDS.index(m[1])
    if m := re.fullmatch(rf"In at least one image, ({_AN}) is ({_REL}) ({_AN})\.", s):
        return any(_REL_NAMES[m[2]] in scene.relation(a, b) for scene in (left, right)
                   for a in _fits(scene, m[1]) for b in _fits(scene, m[3]))
    raise AssertionError(f"sentence matches no template: {s!r}")


def test_nlvr2_labels_follow_both_scenes(world: Path, scenes: dict[int, Scene],
                                         splits: dict[int, str]) -> None:
    labels: Counter[str] = Counter()
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for split in SPLITS:
        for r in _jsonl(world / "annotations" / f"nlvr2_{DEV[split]}.json"):
            assert {"identifier", "sentence", "label", "left_url", "right_url", "left_image",
                    "right_image"} <= r.keys()
            m = re.fullmatch(r"(train|dev|test)-(\d+)-(\d+)-(\d+)", r["identifier"])
            assert m and m[1] == DEV[split]
            left, right = _image_id(r["left_image"]), _image_id(r["right_image"])
            assert (r["left_url"], r["right_url"]) == (r["left_image"], r["right_image"])
            assert left != right and splits[left] == splits[right] == split
            assert r["label"] == str(_nlvr2_truth(scenes[left], scenes[right], r["sentence"]))
            labels[r["label"]] += 1
            groups[f"{m[1]}-{m[2]}-{m[4]}"].append(r)  # NLVR2's consistency groups
    assert abs(labels["True"] - labels["False"]) <= 0.1 * sum(labels.values())
    for group in groups.values():
        assert len({r["sentence"] for r in group}) == 1
        pairs = [(r["left_image"], r["right_image"]) for r in group]
        assert len(set(pairs)) == len(pairs) >= 2 or len(groups) == 1
    assert len({r["sentence"] for g in groups.values() for r in g}) > 10


# --- RefCOCO -------------------------------------------------------------------------------------

class _BuiltinsOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise AssertionError(f"the refs pickle needs {module}.{name}")


def _referents(scene: Scene, expression: str) -> list[WorldObject]:
    m = re.fullmatch(rf"({_THE})(?: (left of|right of|above|below) ({_THE}))?", expression)
    assert m, expression
    found = _fits(scene, m[1])
    if m[2]:
        landmark = _one(scene, m[3])
        found = [o for o in found if m[2] in scene.relation(o, landmark)]
    return found


def test_refcoco_refs_pick_out_their_object(world: Path, scenes: dict[int, Scene],
                                            splits: dict[int, str]) -> None:
    data = (world / "annotations" / "refs(world).p").read_bytes()
    assert data[:2] == b"\x80\x02"  # protocol 2
    refs = _BuiltinsOnly(io.BytesIO(data)).load()
    instances = read_coco_instances(world / "annotations" / "instances.json")
    boxes = {r.annotation_id: (r.image_id, r.bbox) for rs in instances.annotations.values()
             for r in rs}
    assert [r["ref_id"] for r in refs] == list(range(len(refs))) and len(refs) >= N_IMAGES
    sent_ids = [s for r in refs for s in r["sent_ids"]]
    assert sent_ids == list(range(len(sent_ids)))
    for r in refs:
        assert list(r) == ["sent_ids", "file_name", "ann_id", "ref_id", "image_id", "split",
                           "sentences", "category_id"]
        scene = scenes[r["image_id"]]
        image_id, (x, y, w, _) = boxes[r["ann_id"]]
        assert image_id == r["image_id"] and r["file_name"] == file_name(image_id)
        obj = next(o for o in scene.objects if o.box[:2] == (x, y) and o.side == w)
        assert r["category_id"] == category_id(obj.shape)
        split = splits[image_id]
        crowded = len({o.shape for o in scene.objects}) < len(scene.objects)
        assert r["split"] == (split if split != "test" else "testA" if crowded else "testB")
        assert 1 <= len(r["sentences"]) <= 3
        assert [s["sent_id"] for s in r["sentences"]] == r["sent_ids"]
        for s in r["sentences"]:
            assert s["tokens"] == s["sent"].split() and s["sent"] == s["raw"].lower()
            assert _referents(scene, s["raw"]) == [obj], s["raw"]
    assert {r["split"] for r in refs} >= {"train", "val"}


# --- VCR -----------------------------------------------------------------------------------------

def _vcr_refers(tokens: list[Any]) -> set[int] | None:
    """The objects an answer says hold the asked relation."""
    if tokens == ["No", "shape", "is", "."]:
        return set()
    if tokens == ["Every", "shape", "is", "."]:
        return None
    if len(tokens) == 3 and tokens[1:] == ["is", "."]:
        return set(tokens[0])
    assert tokens[1] == "and" and tokens[3:] == ["are", "."], tokens
    return {*tokens[0], *tokens[2]}


def _vcr_reason_true(scene: Scene, tokens: list[Any]) -> bool:
    (x,), colour, (y,) = tokens[0], tokens[2], tokens[-4]
    assert tokens[1] == "is" and tokens[3:7] == ["and", "its", "box", "is"]
    assert tokens[-3:] == ["'s", "box", "."]
    rel = _REL_NAMES[" ".join(tokens[7:-4])]
    a, b = scene.objects[x], scene.objects[y]
    return a.colour == colour and rel in scene.relation(a, b)


def test_vcr_has_one_right_answer_and_rationale(world: Path, scenes: dict[int, Scene],
                                                splits: dict[int, str]) -> None:
    count = 0
    for split in SPLITS:
        for n, r in enumerate(_jsonl(world / "annotations" / f"vcr_{split}.jsonl")):
            assert r["annot_id"] == f"{split}-{n}" and r["movie"] == "world"
            scene = scenes[_image_id(r["img_fn"])]
            assert splits[_image_id(r["img_fn"])] == split
            meta = _json(world / "vcr_metadata" / r["metadata_fn"])
            assert meta["names"] == r["objects"] == [o.shape for o in scene.objects]
            assert meta["boxes"] == [[*map(float, o.box), 1.0] for o in scene.objects]
            assert len(meta["segms"]) == len(r["objects"])
            assert meta["width"] == meta["height"] == scene.image_size
            q = r["question"]
            assert q[:3] == ["Which", "shape", "is"] and q[-1] == "?"
            (j,), rel = q[-2], _REL_NAMES[" ".join(q[3:-2])]
            held = {k for k, o in enumerate(scene.objects)
                    if rel in scene.relation(o, scene.objects[j])}
            assert len(held) == 1
            right = [_vcr_refers(a) == held for a in r["answer_choices"]]
            assert len(right) == 4 and right.index(True) == r["answer_label"] \
                and sum(right) == 1
            reasons = [_vcr_reason_true(scene, t) for t in r["rationale_choices"]]
            assert len(reasons) == 4 and reasons.index(True) == r["rationale_label"] \
                and sum(reasons) == 1
            count += 1
    assert count >= N_IMAGES // 4


# --- the checkers above can fail --------------------------------------------------------------

def test_checkers_reject_what_is_false() -> None:
    circle = WorldObject("circle", "red", "small", (2, 2, 11, 11))
    square = WorldObject("square", "blue", "large", (40, 2, 58, 20))
    star = WorldObject("star", "green", "medium", (12, 40, 25, 53))  # 1 px right of the circle
    scene = Scene((circle, square, star), 64)
    assert _vqa_answer(scene, "Is the circle to the right of the square?") == "no"
    assert _vqa_answer(scene, "How many red shapes are there?") == "1"
    with pytest.raises(AssertionError, match="plainly false"):  # too close to say "no"
        _vqa_answer(scene, "Is the star to the left of the circle?")
    assert _ve_label(scene, "A red circle is made of wood.") == "neutral"
    assert _ve_label(scene, "A green circle is made of wood.") == "contradiction"
    assert _ve_label(scene, "The circle is red.") == "entailment"
    assert _ve_label(scene, "The red circle is to the right of the blue square.") == \
        "contradiction"
    assert _ve_label(scene, "There are exactly two circles.") == "contradiction"
    with pytest.raises(AssertionError):  # a hypothesis about a missing object is no neutral
        _ve_label(scene, "A green circle is heavier than a blue square.")
    lone = Scene((circle, star), 64)
    assert _nlvr2_truth(scene, lone, "The left image contains more shapes than the right image.")
    assert not _nlvr2_truth(scene, lone, "Both images contain a square.")
    assert _nlvr2_truth(scene, lone, "There are exactly two circles in the two images together.")
    assert _referents(scene, "the circle") == [circle]
    assert _referents(scene, "the star above the circle") == []


# --- all files -----------------------------------------------------------------------------------

def test_world_json_lists_the_task_files(world: Path) -> None:
    tasks = _json(world / "world.json")["tasks"]
    assert len(tasks) == 16 and all((world / t).is_file() for t in tasks)
    assert "annotations/refs(world).p" in tasks


def test_task_readers_read_the_world(world: Path) -> None:
    """The readers of the published formats take the world's files unchanged."""
    from vlp.data.formats import nlvr2, refcoco, snli_ve
    from vlp.data.formats import vcr as vcr_format
    from vlp.data.formats import vqa as vqa_format

    ann = world / "annotations"
    vqa = [q for s in SPLITS for q in vqa_format.read_vqa(ann / f"vqa_{s}_questions.json",
                                                 ann / f"vqa_{s}_annotations.json")]
    assert len(vqa) == len(_vqa(world))
    assert sum(len(snli_ve.read_snli_ve(ann / f"snli_ve_{DEV[s]}.jsonl")) for s in SPLITS) > 0
    assert sum(len(nlvr2.read_nlvr2(ann / f"nlvr2_{DEV[s]}.json")) for s in SPLITS) > 0
    assert refcoco.read_refcoco(ann / "refs(world).p", ann / "instances.json")
    vcr = [r for s in SPLITS for r in vcr_format.read_vcr(ann / f"vcr_{s}.jsonl")]
    assert vcr and all(vcr_format.read_vcr_metadata(world / "vcr_metadata" / r.metadata).names
                       == r.objects for r in vcr)


def _task_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.is_file() and p.relative_to(root).parts[0] != "images"}


@pytest.mark.slow  # worlds made twice, in processes
def test_same_seed_same_task_bytes_any_workers(world: Path, tmp_path: Path) -> None:
    again = make_world(tmp_path / "again", N_IMAGES, seed=SEED, workers=2)
    assert _task_hashes(again) == _task_hashes(world)
    assert len(_task_hashes(world)) > 16
