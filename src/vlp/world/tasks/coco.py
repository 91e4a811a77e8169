"""COCO captions and instances and the Karpathy split file: the captioning, retrieval and
pre-training data of a world (``annotations/captions.json``, ``instances.json``,
``dataset_world.json``); ``instances.json`` is also what RefCOCO and the detector refer to.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlp.world.captions import CAPTIONS_PER_IMAGE
from vlp.world.files import LICENSES, coco_info, file_name, split_of, word_tokens, write_json
from vlp.world.tasks.common import MadeImage
from vlp.world.vocab import SHAPES, SUPERCATEGORY, category_id


def _coco_images(made: list[MadeImage], size: int) -> list[dict[str, Any]]:
    return [{"id": m.image_id, "file_name": file_name(m.image_id), "width": size,
             "height": size, "license": 1} for m in made]


def _captions_json(made: list[MadeImage], seed: int, size: int) -> dict[str, Any]:
    annotations = [{"id": (m.image_id - 1) * CAPTIONS_PER_IMAGE + k + 1, "image_id": m.image_id,
                    "caption": c} for m in made for k, c in enumerate(m.captions)]
    return {"info": coco_info(seed), "licenses": LICENSES, "images": _coco_images(made, size),
            "annotations": annotations}


def first_ann_ids(made: list[MadeImage]) -> list[int]:
    """The instances annotation id of each image's first object; the others follow in order."""
    firsts, next_id = [], 1
    for m in made:
        firsts.append(next_id)
        next_id += len(m.scene.objects)
    return firsts


def _instances_json(made: list[MadeImage], seed: int, size: int) -> dict[str, Any]:
    annotations: list[dict[str, Any]] = []
    for m, first in zip(made, first_ann_ids(made), strict=True):
        for k, obj in enumerate(m.scene.objects):
            x0, y0, _, _ = obj.box
            annotations.append({
                "id": first + k, "image_id": m.image_id,
                "category_id": category_id(obj.shape),
                "bbox": [float(x0), float(y0), float(obj.side), float(obj.side)],
                "area": round(obj.area, 2), "iscrowd": 0,
                "attributes": {"colour": obj.colour, "size": obj.size}})
    categories = [{"id": category_id(s), "name": s, "supercategory": SUPERCATEGORY}
                  for s in SHAPES]
    return {"info": coco_info(seed), "licenses": LICENSES, "images": _coco_images(made, size),
            "annotations": annotations, "categories": categories}


def _karpathy_json(made: list[MadeImage]) -> dict[str, Any]:
    splits = split_of(len(made))
    images = []
    for m, split in zip(made, splits, strict=True):
        sentids = [(m.image_id - 1) * CAPTIONS_PER_IMAGE + k for k in range(len(m.captions))]
        sentences = [{"tokens": word_tokens(c), "raw": c, "imgid": m.image_id - 1, "sentid": s}
                     for c, s in zip(m.captions, sentids, strict=True)]
        images.append({"filepath": "images", "sentids": sentids,
                       "filename": file_name(m.image_id), "imgid": m.image_id - 1,
                       "split": split, "sentences": sentences, "cocoid": m.image_id})
    return {"images": images, "dataset": "world"}


def write_coco(ann: Path, made: list[MadeImage], seed: int, size: int) -> None:
    """Write ``captions.json``, ``instances.json`` and ``dataset_world.json`` (Karpathy).

    Args:
        ann: the world's ``annotations/`` directory.
        made: every image of the world, in id order.
        seed: the world's seed.
        size: the image side in pixels.
    """
    write_json(ann / "captions.json", _captions_json(made, seed, size))
    write_json(ann / "instances.json", _instances_json(made, seed, size))
    write_json(ann / "dataset_world.json", _karpathy_json(made))
