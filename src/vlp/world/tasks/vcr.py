"""The world's VCR files.

**VCR** (``annotations/vcr_{train,val,test}.jsonl`` and ``vcr_metadata/{image}.json``): about
one question per two images, "Which shape is to the left of [j]?" where exactly one object
holds that relation (:meth:`Scene.sole_related`). Answers "[i] is." — one right, three wrong
(other objects first, then "No shape is.", "Every shape is.", "[i] and [k] are."); rationales
"[x] is red and its box is to the left of [y]'s box." — one true, three false (wrong colour,
wrong object, reversed). Object references are lists of indices into ``objects`` (every object
of the scene, in drawing order). ``img_fn`` is relative to ``images/``, ``metadata_fn`` to
``vcr_metadata/``; the metadata holds VCR's ``boxes`` (``[x1, y1, x2, y2, score]``), ``segms``
(each object's outline polygon), ``names``, ``width`` and ``height``. Provenance fields
(``answer_sources``, ``match_fold``, …) are plausible constants.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vlp.world.files import SPLITS, file_name, write_json, write_jsonl
from vlp.world.generate import image_rng
from vlp.world.scene import Scene, WorldObject, star_points
from vlp.world.tasks.common import TaskImage
from vlp.world.vocab import COLOURS, OPPOSITE, RELATION_PHRASES, RELATIONS

VCR_METADATA = "vcr_metadata"
VCR_SHARE = 0.75  # of the images that have a question to ask (about two in three)
Tokens = list[str | list[int]]


def _index(scene: Scene, obj: WorldObject) -> int:
    return next(k for k, o in enumerate(scene.objects) if o is obj)


def outline(obj: WorldObject) -> list[list[float]]:
    """The drawn shape's outline as a polygon of ``[x, y]`` points (a circle as 16)."""
    x0, y0, x1, y1 = (float(v) for v in obj.box)
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
    if obj.shape == "circle":
        points = [(cx + r * math.cos(k * math.pi / 8), cy + r * math.sin(k * math.pi / 8))
                  for k in range(16)]
    elif obj.shape == "square":
        points = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    elif obj.shape == "triangle":
        points = [(cx, y0), (x1, y1), (x0, y1)]
    elif obj.shape == "diamond":
        points = [(cx, y0), (x1, cy), (cx, y1), (x0, cy)]
    elif obj.shape == "star":
        points = star_points(obj.box)
    else:  # cross: two bars a third of the side thick
        t = r / 3
        points = [(cx - t, y0), (cx + t, y0), (cx + t, cy - t), (x1, cy - t), (x1, cy + t),
                  (cx + t, cy + t), (cx + t, y1), (cx - t, y1), (cx - t, cy + t), (x0, cy + t),
                  (x0, cy - t), (cx - t, cy - t)]
    return [[round(x, 2), round(y, 2)] for x, y in points]


def vcr_metadata(scene: Scene) -> dict[str, Any]:
    """VCR's per-image metadata: every object's box (score 1), outline and class name."""
    return {"boxes": [[*(float(v) for v in o.box), 1.0] for o in scene.objects],
            "segms": [[outline(o)] for o in scene.objects],
            "names": [o.shape for o in scene.objects],
            "width": scene.image_size, "height": scene.image_size}


def _because(x: int, colour: str, rel: str, y: int) -> Tokens:
    return [[x], "is", colour, "and", "its", "box", "is", *RELATION_PHRASES[rel].split(), [y],
            "'s", "box", "."]


def _shuffled_in(right: Tokens, wrong: list[Tokens],
                 rng: random.Random) -> tuple[list[Tokens], int]:
    """Three of ``wrong`` (in order) with ``right`` at a random place; the place."""
    label = rng.randrange(4)
    choices = wrong[:3]
    choices.insert(label, right)
    return choices, label


def _vcr_choices(scene: Scene, rng: random.Random, i: int, rel: str, j: int
                 ) -> tuple[list[Tokens], int, list[Tokens], int]:
    """Answers and rationales for "Which shape is ``rel`` [j]?" whose answer is [i]."""
    n = len(scene.objects)
    others = [k for k in rng.sample(range(n), n) if k not in (i, j)]
    # every one false: only [i] is ``rel`` of [j], and [j] is not ``rel`` of itself
    fillers: list[Tokens] = [[[j], "is", "."], ["No", "shape", "is", "."],
                             ["Every", "shape", "is", "."]]
    fillers += [[[i], "and", [k], "are", "."] for k in [*others, j]]
    wrong: list[Tokens] = [[[k], "is", "."] for k in others]
    answers, answer_label = _shuffled_in([[i], "is", "."],
                                         wrong + rng.sample(fillers, len(fillers)), rng)
    obj, landmark = scene.objects[i], scene.objects[j]
    colour = rng.choice([c for c in COLOURS if c != obj.colour])
    false_reasons = [_because(i, colour, rel, j), _because(j, landmark.colour, rel, i),
                     _because(i, obj.colour, OPPOSITE[rel], j)]
    false_reasons += [_because(k, scene.objects[k].colour, rel, j) for k in others]
    rationales, rationale_label = _shuffled_in(
        _because(i, obj.colour, rel, j), rng.sample(false_reasons, len(false_reasons)),
        rng)
    return answers, answer_label, rationales, rationale_label


def _orig(tokens: Tokens) -> str:
    text = " ".join(str(t[0]) if isinstance(t, list) else t for t in tokens)
    return re.sub(r" (?=[?.]|'s)", "", text)


def vcr_item(seed: int, image_id: int, scene: Scene) -> dict[str, Any] | None:
    """The VCR fields of the image's question that depend on its scene; None if none."""
    rng = image_rng(seed, image_id, "vcr")
    if rng.random() >= VCR_SHARE:
        return None
    options = [(_index(scene, sole), rel, j) for j, landmark in enumerate(scene.objects)
               for rel in RELATIONS if (sole := scene.sole_related(landmark, rel)) is not None]
    if not options:
        return None
    i, rel, j = rng.choice(options)
    question: Tokens = ["Which", "shape", "is", *RELATION_PHRASES[rel].split(), [j], "?"]
    answers, answer_label, rationales, rationale_label = _vcr_choices(scene, rng, i, rel, j)
    return {"objects": [o.shape for o in scene.objects], "question": question,
            "answer_choices": answers, "answer_label": answer_label,
            "rationale_choices": rationales, "rationale_label": rationale_label,
            "question_orig": _orig(question), "answer_orig": _orig(answers[answer_label]),
            "rationale_orig": _orig(rationales[rationale_label])}


def _vcr_record(im: TaskImage, item: dict[str, Any], split: str, n: int) -> dict[str, Any]:
    stem = file_name(im.image_id).rsplit(".", 1)[0]
    return {"movie": "world", "objects": item["objects"], "interesting_scores": [],
            "answer_likelihood": "likely", "img_fn": file_name(im.image_id),
            "metadata_fn": f"{stem}.json", "answer_orig": item["answer_orig"],
            "question_orig": item["question_orig"], "rationale_orig": item["rationale_orig"],
            "question": item["question"], "answer_match_iter": [0, 0, 0],
            "answer_sources": [n if k == item["answer_label"] else 0 for k in range(4)],
            "answer_choices": item["answer_choices"], "answer_label": item["answer_label"],
            "rationale_choices": item["rationale_choices"],
            "rationale_sources": [n if k == item["rationale_label"] else 0 for k in range(4)],
            "rationale_match_iter": [0, 0, 0], "rationale_label": item["rationale_label"],
            "img_id": f"{split}-{im.image_id}", "question_number": 0,
            "annot_id": f"{split}-{n}", "match_fold": f"{split}-0", "match_index": n}


def write_vcr(root: Path, images: Sequence[TaskImage]) -> list[str]:
    """Write ``vcr_{train,val,test}.jsonl`` and each question's metadata file; returns the
    JSON lines files' names."""
    (root / VCR_METADATA).mkdir(exist_ok=True)
    written = []
    for split in SPLITS:
        records: list[dict[str, Any]] = []
        for im in images:
            item = im.tasks.vcr if im.split == split else None
            if item is None:
                continue
            record = _vcr_record(im, item, split, len(records))
            write_json(root / VCR_METADATA / record["metadata_fn"], vcr_metadata(im.scene))
            records.append(record)
        name = f"vcr_{split}.jsonl"
        write_jsonl(root / "annotations" / name, records)
        written.append(name)
    return written
