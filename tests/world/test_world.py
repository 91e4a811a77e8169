"""The synthetic world: determinism, scene semantics, true captions, standard formats."""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from vlp.data.formats.coco import read_coco_captions, read_coco_instances
from vlp.data.formats.karpathy import read_karpathy
from vlp.errors import VlpError
from vlp.world.captions import CAPTIONS_PER_IMAGE, make_captions
from vlp.world.files import file_name
from vlp.world.generate import generate_scene
from vlp.world.make import make_world
from vlp.world.render import render_scene
from vlp.world.scene import Scene, WorldObject, load_scenes
from vlp.world.vocab import COLOURS, NUMBER_WORDS, PLURALS, SHAPES, SIZES, category_id

N_IMAGES = 30


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_world(tmp_path_factory.mktemp("w") / "world", N_IMAGES, seed=3)


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# --- determinism and layout ----------------------------------------------------------------------

@pytest.mark.slow  # worlds made twice, in processes
def test_same_seed_same_bytes_any_workers(world: Path, tmp_path: Path) -> None:
    again = make_world(tmp_path / "again", N_IMAGES, seed=3, workers=2)
    assert _hashes(again) == _hashes(world)
    tasks = json.loads((world / "world.json").read_text())["tasks"]
    vcr_metadata = len(list((world / "vcr_metadata").iterdir()))
    # images + 3 annotation files + 2 meta files + task files + VCR's per-image metadata
    # + the vocabulary
    assert len(_hashes(world)) == N_IMAGES + 5 + len(tasks) + vcr_metadata + 1
    assert "vocab.txt" in _hashes(world)


def test_different_seed_different_world(world: Path, tmp_path: Path) -> None:
    other = _hashes(make_world(tmp_path / "other", N_IMAGES, seed=4))
    mine = _hashes(world)
    # which images get a VCR question depends on the seed, and so do those metadata files
    other = {k: v for k, v in other.items() if not k.startswith("vcr_metadata/")}
    mine = {k: v for k, v in mine.items() if not k.startswith("vcr_metadata/")}
    assert other.keys() == mine.keys()
    empty = hashlib.sha256(b"").hexdigest()  # a task file of a tiny split may hold nothing
    assert all(other[k] != mine[k] for k in mine if mine[k] != empty)


def test_layout_and_images(world: Path) -> None:
    for name in ("world.json", "scenes.json", "annotations/captions.json",
                 "annotations/instances.json", "annotations/dataset_world.json"):
        assert (world / name).is_file(), name
    img = Image.open(world / "images" / "world_000000000001.png")
    assert img.mode == "RGB" and img.size == (64, 64)
    assert not (world / "images" / file_name(0)).exists()
    assert (world / "images" / file_name(N_IMAGES)).is_file()
    assert not list(world.parent.glob(".world.*"))  # no temporary left beside it


def test_refuses_to_replace_existing_directory(world: Path, tmp_path: Path) -> None:
    before = _hashes(world)
    with pytest.raises(VlpError, match="already exists"):
        make_world(world, 3)
    assert _hashes(world) == before
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (make_world(empty, 3) / "world.json").is_file()


@pytest.mark.parametrize(("kwargs", "field"), [({"n_images": 0}, "--images"),
                                               ({"size": 16}, "--size"),
                                               ({"seed": -1}, "--seed"),
                                               ({"workers": 0}, "--workers")])
def test_bad_arguments(tmp_path: Path, kwargs: dict[str, int], field: str) -> None:
    args = {"n_images": 2, **kwargs}
    with pytest.raises(VlpError, match=field):
        make_world(tmp_path / "w", **args)
    assert not (tmp_path / "w").exists()


def test_size_is_configurable(tmp_path: Path) -> None:
    out = make_world(tmp_path / "big", 2, size=96)
    assert Image.open(out / "images" / file_name(2)).size == (96, 96)
    assert all(s.image_size == 96 for s in load_scenes(out).values())


# --- scenes --------------------------------------------------------------------------------------

def test_scenes_are_valid() -> None:
    counts: Counter[int] = Counter()
    for image_id in range(1, 201):
        scene = generate_scene(0, image_id)
        counts[len(scene.objects)] += 1
        assert 2 <= len(scene.objects) <= 6
        for i, a in enumerate(scene.objects):
            x0, y0, x1, y1 = a.box
            assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
            for b in scene.objects[i + 1:]:  # boxes never overlap
                assert x1 <= b.box[0] or b.box[2] <= x0 or y1 <= b.box[1] or b.box[3] <= y0
    assert set(counts) == {2, 3, 4, 5, 6}
    assert generate_scene(0, 7) == generate_scene(0, 7) != generate_scene(1, 7)


def test_rendering_draws_each_object_in_its_colour() -> None:
    scene = generate_scene(5, 11)
    pixels = render_scene(scene, 5, 11).load()
    assert pixels is not None
    for obj in scene.objects:
        cx, cy = obj.centre
        assert pixels[int(cx), int(cy)] == COLOURS[obj.colour], obj


def test_scenes_json_round_trip(world: Path) -> None:
    scenes = load_scenes(world)
    assert list(scenes) == list(range(1, N_IMAGES + 1))
    assert scenes[5] == generate_scene(3, 5)


def test_load_scenes_reports_bad_field(tmp_path: Path) -> None:
    (tmp_path / "scenes.json").write_text(
        '{"size": 64, "scenes": {"1": [{"shape": "blob", "colour": "red", "size": "small",'
        ' "box": [0, 0, 5, 5]}]}}')
    with pytest.raises(VlpError) as e:
        load_scenes(tmp_path)
    assert "scenes.json: field 'scenes.1[0].shape': expected one of circle" in str(e.value)


def _obj(shape: str, colour: str, size: str, x: int, y: int) -> WorldObject:
    side = {"small": 9, "medium": 13, "large": 18}[size]
    return WorldObject(shape, colour, size, (x, y, x + side, y + side))


def test_scene_questions() -> None:
    a = _obj("circle", "red", "small", 2, 2)
    b = _obj("circle", "blue", "large", 40, 2)
    c = _obj("square", "blue", "medium", 2, 40)
    d = _obj("circle", "red", "medium", 13, 40)  # only 2 px right of c: too close to say
    scene = Scene((a, b, c, d), 64)
    assert scene.count() == 4 and scene.count(shape="circle") == 3
    assert scene.count(colour="blue") == 2 and scene.count(shape="circle", colour="red") == 2
    assert scene.objects_matching(size="large") == [b]
    assert scene.relation(a, b) == ("left of",) and scene.relation(b, a) == ("right of",)
    assert scene.relation(a, c) == ("above",) and scene.relation(c, b) == ("left of", "below")
    assert scene.relation(c, d) == () and scene.relation(a, a) == ()
    assert scene.bigger(b, a) and not scene.bigger(a, b) and not scene.bigger(a, a)
    with pytest.raises(ValueError, match="hexagon"):
        scene.count(shape="hexagon")


def test_descriptions_are_unique() -> None:
    a = _obj("circle", "red", "small", 2, 2)
    b = _obj("circle", "red", "small", 40, 2)
    c = _obj("square", "blue", "medium", 2, 40)
    d = _obj("star", "green", "large", 40, 40)
    scene = Scene((a, b, c, d), 64)
    assert scene.describe(c) == "the square"
    assert scene.attribute_description(a) is None  # two identical red circles
    # both circles are above the square, so "above the square" would not single one out
    assert scene.describe(a) == "the circle left of the star"
    assert scene.describe(b) == "the circle right of the square"
    lone = Scene((a, b), 64)
    assert lone.unique_description(a) is None
    assert lone.describe(a) == "the small red circle"


# --- captions ------------------------------------------------------------------------------------

_NUM = "|".join(NUMBER_WORDS)
_SIZE = "|".join(SIZES)
_COLOUR = "|".join(COLOURS)
_SHAPE = "|".join(SHAPES)
_NOUN = "|".join([*SHAPES, *PLURALS.values()])
_IND = rf"an? (?:(?:{_SIZE}) )?(?:{_COLOUR}) (?:{_SHAPE})"
_DEF = rf"the (?:(?:{_SIZE}) )?(?:(?:{_COLOUR}) )?(?:{_SHAPE})"
_REL = "to the left of|to the right of|above|below"
_REL_NAMES = {"to the left of": "left of", "to the right of": "right of", "above": "above",
              "below": "below"}


def _matches(scene: Scene, phrase: str) -> list[WorldObject]:
    """The objects a noun phrase ("a small red circle", "the circle") can refer to."""
    words = phrase.split()[1:]
    size = words.pop(0) if words[0] in SIZES else None
    colour = words.pop(0) if words[0] in COLOURS else None
    return scene.objects_matching(shape=words[0], colour=colour, size=size)


def _the(scene: Scene, phrase: str) -> WorldObject:
    found = _matches(scene, phrase)
    assert len(found) == 1, f"{phrase!r} does not pick out one object"
    return found[0]


def _some_pair(scene: Scene, p: str, q: str,
               holds: Callable[[WorldObject, WorldObject], bool]) -> bool:
    return any(a is not b and holds(a, b) for a in _matches(scene, p) for b in _matches(scene, q))


def _n(word: str) -> int:
    return NUMBER_WORDS.index(word)


def _check_count(scene: Scene, caption: str) -> str | None:
    """Check a counting caption; None if ``caption`` is not one."""
    objects = scene.objects
    if m := re.fullmatch(rf"(?:there are|the image contains|a picture with exactly) ({_NUM}) "
                         r"(?:objects in the picture|shapes in total|shapes)", caption):
        assert len(objects) == _n(m[1])
        return "total"
    if m := re.fullmatch(rf"(?:there (?:is|are)|the picture shows exactly) ({_NUM}) ({_NOUN})"
                         r"(?: in the image)?", caption):
        shape = m[2] if m[2] in SHAPES else next(s for s, p in PLURALS.items() if p == m[2])
        assert scene.count(shape=shape) == _n(m[1])
        return "shape_count"
    if m := re.fullmatch(rf"there (?:is|are) ({_NUM}) ({_COLOUR}) objects? in the image", caption):
        assert scene.count(colour=m[2]) == _n(m[1])
        return "colour_count"
    if m := re.fullmatch(rf"({_NUM}) of the ({_NUM}) shapes (?:is|are) ({_COLOUR})", caption):
        assert scene.count(colour=m[3]) == _n(m[1]) and len(objects) == _n(m[2])
        return "colour_count"
    if m := re.fullmatch(rf"({_IND}) (?:and|among) ({_NUM}) other shapes?", caption):
        assert _matches(scene, m[1]) and len(objects) - 1 == _n(m[2])
        return "one_among"
    return None


def _check_comparison(scene: Scene, caption: str) -> str | None:
    """Check a caption relating two objects by place or size; None if it is not one."""
    if m := re.fullmatch(rf"({_IND}) (?:is )?({_REL}) ({_IND})", caption):
        rel = _REL_NAMES[m[2]]
        assert _some_pair(scene, m[1], m[3], lambda a, b: rel in scene.relation(a, b))
        return "relation"
    if m := re.fullmatch(rf"({_DEF}) is ({_REL}) ({_DEF})", caption):
        assert _REL_NAMES[m[2]] in scene.relation(_the(scene, m[1]), _the(scene, m[3]))
        return "relation"
    if m := re.fullmatch(rf"({_DEF}|{_IND}) is (bigger|smaller) than ({_DEF}|{_IND})", caption):
        smaller = m[2] == "smaller"

        def holds(a: WorldObject, b: WorldObject) -> bool:
            return scene.bigger(b, a) if smaller else scene.bigger(a, b)
        if m[1].startswith("the"):
            assert holds(_the(scene, m[1]), _the(scene, m[3]))
        else:
            assert _some_pair(scene, m[1], m[3], holds)
        return "size"
    if m := re.fullmatch(rf"the (biggest|smallest) shape is ({_IND})", caption):
        ranks = {o: SIZES.index(o.size) for o in scene.objects}
        best = max(ranks.values()) if m[1] == "biggest" else min(ranks.values())
        extreme = [o for o in scene.objects if ranks[o] == best]
        assert len(extreme) == 1 and extreme[0] in _matches(scene, m[2])
        return "size"
    return None


def _check_caption(scene: Scene, caption: str) -> str:
    """Assert ``caption`` is true of ``scene``; return the kind of claim it makes."""
    kind = _check_count(scene, caption) or _check_comparison(scene, caption)
    if kind is not None:
        return kind
    if m := re.fullmatch(rf"the only ({_SHAPE}) in the picture is ({_COLOUR})", caption):
        assert [o.colour for o in scene.objects_matching(shape=m[1])] == [m[2]]
        return "property"
    if m := re.fullmatch(rf"the ({_SHAPE}) is ({_SIZE}) and ({_COLOUR})", caption):
        assert [(o.size, o.colour) for o in scene.objects_matching(shape=m[1])] == [(m[2], m[3])]
        return "property"
    if m := re.fullmatch(rf"(?:a picture of |an image showing )?({_IND}) and ({_IND})", caption):
        assert _some_pair(scene, m[1], m[2], lambda a, b: True)
        return "pair"
    if m := re.fullmatch(rf"(?:a scene with |an image of )?((?:{_IND}, )*{_IND} and {_IND})",
                         caption):
        listed = Counter(" ".join(p.split()[1:]) for p in re.split(r", | and ", m[1]))
        assert listed == Counter(o.phrase() for o in scene.objects)
        return "listing"
    raise AssertionError(f"caption matches no template: {caption!r}")


def test_captions_are_true_and_distinct() -> None:
    kinds: Counter[str] = Counter()
    for image_id in range(1, 301):
        scene = generate_scene(0, image_id)
        captions = make_captions(scene, random.Random(image_id))
        assert len(captions) == CAPTIONS_PER_IMAGE == len(set(captions))
        for caption in captions:
            assert caption == caption.lower() and not caption.endswith(".")
            assert 4 <= len(caption.split()) <= 22, caption
            kinds[_check_caption(scene, caption)] += 1
    assert set(kinds) == {"total", "shape_count", "colour_count", "relation", "size",
                          "property", "one_among", "pair", "listing"}
    assert kinds["relation"] > 100 and kinds["shape_count"] + kinds["colour_count"] > 100


def test_false_captions_are_caught() -> None:
    """The checker above can fail: it rejects captions that are false of the scene."""
    scene = Scene((_obj("circle", "red", "small", 2, 2), _obj("square", "blue", "large", 40, 2)),
                  64)
    for wrong in ("there are three objects in the picture", "there is one star in the image",
                  "a blue square is to the left of a red circle",
                  "a red circle above a blue square",
                  "the circle is bigger than the square", "a red circle and a green star",
                  "a scene with a red circle, a blue square and a blue square"):
        with pytest.raises(AssertionError):
            _check_caption(scene, wrong)


# --- the world's files through the readers -------------------------------------------------------

def test_captions_file(world: Path) -> None:
    records = read_coco_captions(world / "annotations" / "captions.json")
    scenes = load_scenes(world)
    assert len(records) == CAPTIONS_PER_IMAGE * N_IMAGES
    assert len({r.caption_id for r in records}) == len(records)
    for r in records:
        assert r.file_name == file_name(r.image_id)
        _check_caption(scenes[r.image_id], r.caption)


def test_instances_file(world: Path) -> None:
    inst = read_coco_instances(world / "annotations" / "instances.json")
    scenes = load_scenes(world)
    assert inst.categories == {category_id(s): s for s in SHAPES}
    assert inst.images[1].width == inst.images[1].height == 64
    for image_id, scene in scenes.items():
        boxes = [(r.category_id, r.bbox) for r in inst.annotations[image_id]]
        assert boxes == [(category_id(o.shape), (o.box[0], o.box[1], o.side, o.side))
                         for o in scene.objects]
        assert all(0 < r.area <= r.bbox[2] * r.bbox[3] and not r.iscrowd
                   for r in inst.annotations[image_id])


def test_karpathy_file(world: Path) -> None:
    images = read_karpathy(world / "annotations" / "dataset_world.json")
    captions = read_coco_captions(world / "annotations" / "captions.json")
    assert [im.image_id for im in images] == list(range(1, N_IMAGES + 1))
    assert Counter(im.split for im in images) == {"train": 24, "val": 3, "test": 3}
    assert [c for im in images for c in im.captions] == [r.caption for r in captions]
    assert all((world / im.file_path / im.file_name).is_file() for im in images)


def test_the_world_comes_with_its_vocabulary(world: Path) -> None:
    """vocab.txt covers the training texts the demo and the tasks read: captions, questions
    (with their '?') and hypotheses, with no [UNK]; a run can take it as data.vocab."""
    from vlp.data.tokenizer import Tokenizer
    from vlp.world.make import training_texts

    tok = Tokenizer.from_vocab(world / "vocab.txt")
    texts = training_texts(world)
    assert any(t.endswith("?") for t in texts)
    encoded = tok.encode(texts, 64)
    assert all(tok.unk_id not in ids for ids in encoded)
    assert tok.token_id("?") is not None and tok.token_id("circle") is not None
