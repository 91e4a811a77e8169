"""Plain records produced by the readers of :mod:`vlp.data.formats`, one shape per published
format.

Records hold ids, text and task fields only; no tensors, no file handles. The world and
real datasets produce the same records, so everything downstream is format-agnostic.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

KARPATHY_SPLITS = ("train", "val", "test", "restval")


@dataclass(frozen=True)
class CaptionRecord:
    """One caption of one image (a COCO captions annotation).

    Attributes:
        image_id: the image's id.
        caption: the caption text as published (not normalised).
        caption_id: the annotation's id.
        file_name: the image's file name, relative to the images directory.
    """

    image_id: int
    caption: str
    caption_id: int
    file_name: str


@dataclass(frozen=True)
class ImageEntry:
    """One entry of a COCO-style ``images`` list, where the size may be left out.

    Attributes:
        image_id: the image's id.
        file_name: file path relative to the image root.
        width: width in pixels, or None when the list does not give it.
        height: height in pixels, or None.
        where: the entry's place in its file (``images[3]``), for messages.
    """

    image_id: int
    file_name: str
    width: int | None
    height: int | None
    where: str


@dataclass(frozen=True)
class ImageInfo:
    """One entry of a COCO ``images`` list.

    Attributes:
        image_id: the image's id.
        file_name: file name relative to the images directory.
        width: width in pixels.
        height: height in pixels.
    """

    image_id: int
    file_name: str
    width: int
    height: int


@dataclass(frozen=True)
class InstanceRecord:
    """One object annotation of a COCO instances file.

    Attributes:
        image_id: the image the object is in.
        category_id: the object's category (a key of :attr:`Instances.categories`).
        bbox: the box as published by COCO: ``(x, y, width, height)`` in pixels.
        annotation_id: the annotation's id.
        area: the object's area in pixels (as published; 0.0 if absent).
        iscrowd: whether COCO marks the annotation as a crowd region.
    """

    image_id: int
    category_id: int
    bbox: tuple[float, float, float, float]
    annotation_id: int
    area: float = 0.0
    iscrowd: bool = False


@dataclass(frozen=True)
class Instances:
    """A whole COCO instances file.

    Attributes:
        images: image id → image info.
        annotations: image id → that image's objects, in file order (every image has a key,
            possibly with an empty list).
        categories: category id → category name.
    """

    images: dict[int, ImageInfo]
    annotations: dict[int, list[InstanceRecord]]
    categories: dict[int, str]


@dataclass(frozen=True)
class KarpathyImage:
    """One image of a Karpathy split file with its captions.

    Attributes:
        image_id: ``cocoid`` when the file has it, else ``imgid``.
        file_name: the image's file name.
        file_path: the directory the file lies in, relative to the dataset root ("" if absent).
        split: ``train``, ``val``, ``test`` or ``restval``, exactly as published.
        captions: the raw caption texts.
    """

    image_id: int
    file_name: str
    file_path: str
    split: str
    captions: tuple[str, ...]


@dataclass(frozen=True)
class ImageCaptions:
    """One entry of the image → caption-list format (ALBEF / BLIP Karpathy test files).

    Attributes:
        image: the image path as published, e.g. ``val2014/COCO_val2014_000000391895.jpg``.
        captions: the raw caption texts.
    """

    image: str
    captions: tuple[str, ...]


def restval_as_train(images: list[KarpathyImage]) -> list[KarpathyImage]:
    """The images with split ``restval`` relabelled ``train``, the usual 113k COCO training set.

    Readers keep ``restval`` as published; callers opt in to merging it with this helper.

    Args:
        images: records from :func:`vlp.data.formats.karpathy.read_karpathy`.
    """
    return [replace(im, split="train") if im.split == "restval" else im for im in images]
