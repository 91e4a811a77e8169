"""The world's RefCOCO file.

**RefCOCO** (``annotations/refs(world).p``, beside ``instances.json`` as REFER expects): one
ref per object that :meth:`Scene.referring_expressions` can pick out, with 1–3 of those
expressions; ``ann_id`` is the object's id in ``instances.json``. Splits follow the Karpathy
split, test images divided as RefCOCO divides people from other objects by image: testA holds
the test images where some shape occurs twice or more (so an expression must tell same-shape
objects apart), testB the rest.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vlp.world.files import file_name, word_tokens
from vlp.world.generate import image_rng
from vlp.world.scene import Scene
from vlp.world.tasks.common import TaskImage
from vlp.world.vocab import category_id

REFS_FILE = "refs(world).p"
MAX_SENTENCES = 3


def refcoco_split(im: TaskImage) -> str:
    """train / val, or for a test image testA (some shape occurs twice or more) or testB."""
    if im.split != "test":
        return im.split
    crowded = any(im.scene.count(o.shape) > 1 for o in im.scene.objects)
    return "testA" if crowded else "testB"


def ref_expressions(seed: int, image_id: int,
                    scene: Scene) -> list[tuple[int, list[tuple[str, list[str]]]]]:
    """``(object index, 1–3 (expression, tokens))`` for each object that can be picked out."""
    rng = image_rng(seed, image_id, "refcoco")
    refs = []
    for k, obj in enumerate(scene.objects):
        expressions = scene.referring_expressions(obj)
        if expressions:
            n = rng.randint(1, min(MAX_SENTENCES, len(expressions)))
            refs.append((k, [(e, word_tokens(e)) for e in rng.sample(expressions, n)]))
    return refs


def _refs(images: Sequence[TaskImage]) -> list[dict[str, Any]]:
    refs: list[dict[str, Any]] = []
    sent_id = 0
    for im in images:
        for k, picked in im.tasks.refs:
            obj = im.scene.objects[k]
            sentences = [{"tokens": tokens, "raw": e, "sent_id": sent_id + j,
                          "sent": " ".join(tokens)} for j, (e, tokens) in enumerate(picked)]
            refs.append({"sent_ids": [s["sent_id"] for s in sentences],
                         "file_name": file_name(im.image_id), "ann_id": im.first_ann_id + k,
                         "ref_id": len(refs), "image_id": im.image_id,
                         "split": refcoco_split(im), "sentences": sentences,
                         "category_id": category_id(obj.shape)})
            sent_id += len(sentences)
    return refs


def write_refcoco(ann: Path, images: Sequence[TaskImage]) -> list[str]:
    """Write ``refs(world).p``; returns its name."""
    # through JSON first: fresh, unshared objects pickle to the same bytes however the refs
    # were built (pickle memoises shared objects)
    refs = json.loads(json.dumps(_refs(images)))
    (ann / REFS_FILE).write_bytes(pickle.dumps(refs, protocol=2))
    return [REFS_FILE]
