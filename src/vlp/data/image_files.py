"""Where each image of a data set is on disk: image id → file, the way data sets publish it.

An image is found through a COCO-style ``images`` list (``id``, ``file_name``, optional
``width`` / ``height``) relative to an image root: the COCO captions or instances file of
the split, or a file that holds only that list. VQA v2 questions name COCO image ids, so
they resolve through the COCO list of their split. A Karpathy split file lists each
image's ``filepath`` / ``filename`` itself. Data sets that name images by file alone
(SNLI-VE's Flickr30k ``2248275918.jpg``, NLVR2's ``dev-850-0-img0.png``) resolve through
a folder scan, ids taken from the file stems as the region store keys them
(:func:`vlp.data.features.parse_image_id`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from vlp.data.features import parse_image_id
from vlp.data.formats.caption_list import parse_caption_list
from vlp.data.formats.coco import parse_image_list, read_image_list
from vlp.data.images import check_image_size, load_image
from vlp.data.readers import load_json
from vlp.data.records import ImageCaptions, ImageEntry, KarpathyImage
from vlp.errors import VlpError, input_error

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")


@dataclass(frozen=True)
class ImageFile:
    """One image: its file and the size its list gives (None when the list has none).

    Attributes:
        image_id: the id records and features use.
        path: the file.
        width: published width in pixels, or None.
        height: published height in pixels, or None.
        listed: where the image is listed (``captions.json images[3]``), for messages.
    """

    image_id: int
    path: Path
    width: int | None = None
    height: int | None = None
    listed: str = ""


class ImageIndex:
    """Image id → :class:`ImageFile`.

    Args:
        files: the images.
        source: what the index was read from, for messages (a list file, a folder).
    """

    def __init__(self, files: Iterable[ImageFile], source: str) -> None:
        self.files = {f.image_id: f for f in files}
        self.source = source

    def __len__(self) -> int:
        return len(self.files)

    def __contains__(self, image_id: object) -> bool:
        return image_id in self.files

    def ids(self) -> list[int]:
        """Every image id, sorted."""
        return sorted(self.files)

    @classmethod
    def from_list(cls, path: str | Path, root: str | Path | None = None) -> ImageIndex:
        """The images of a COCO-style ``images`` list, relative to ``root`` (by default the
        list's own folder)."""
        path = Path(path)
        return cls._listed(path, read_image_list(path), root)

    @classmethod
    def _listed(cls, path: Path, entries: Iterable[ImageEntry],
                root: str | Path | None) -> ImageIndex:
        base = Path(root) if root else path.parent
        return cls((ImageFile(e.image_id, base / e.file_name, e.width, e.height,
                              f"{path.name} {e.where}") for e in entries), str(path))

    @classmethod
    def read(cls, path: str | Path, root: str | Path | None = None) -> ImageIndex:
        """The images ``path`` names, whatever it is: a folder of images
        (:meth:`from_folder`), an ALBEF / BLIP caption list (``[{"image", "caption"}]``,
        :meth:`from_caption_list`) or a COCO-style ``images`` list (:meth:`from_list`)."""
        path = Path(path)
        if path.is_dir():
            return cls.from_folder(path)
        return cls.from_document(path, load_json(path), root)

    @classmethod
    def from_document(cls, path: str | Path, doc: Any,
                      root: str | Path | None = None) -> ImageIndex:
        """:meth:`read` on a JSON document already parsed from ``path`` (a large COCO
        file is read once)."""
        path = Path(path)
        if isinstance(doc, list) and doc and isinstance(doc[0], dict) and "image" in doc[0]:
            return cls.from_caption_list(path, parse_caption_list(path, doc), root)
        return cls._listed(path, parse_image_list(path, doc), root)

    @classmethod
    def from_caption_list(cls, path: str | Path, records: Iterable[ImageCaptions],
                          root: str | Path | None = None) -> ImageIndex:
        """The images of an ALBEF / BLIP caption list (``image`` relative to ``root``, by
        default the list's folder), ids from the file stems as :meth:`from_folder` takes
        them.

        Raises:
            VlpError: a file name without an id, or two files that give one id.
        """
        path = Path(path)
        base = Path(root) if root else path.parent
        files: dict[int, ImageFile] = {}
        for i, record in enumerate(records):
            try:
                image_id = parse_image_id(Path(record.image).stem)
            except ValueError:
                raise input_error(path, f"[{i}].image", f"{record.image!r} has no id in its "
                                  "name (expected trailing digits, e.g. COCO_val2014_"
                                  "000000060623.jpg)") from None
            known = files.get(image_id)
            if known is not None and known.path != base / record.image:
                raise input_error(path, f"[{i}].image", f"{record.image!r} gives image id "
                                  f"{image_id}, as {known.path.name} does")
            files[image_id] = ImageFile(image_id, base / record.image,
                                        listed=f"{path.name} [{i}]")
        return cls(files.values(), str(path))

    @classmethod
    def from_karpathy(cls, path: str | Path, images: Iterable[KarpathyImage],
                      root: str | Path) -> ImageIndex:
        """The images of a Karpathy split file (``filepath/filename`` under ``root``)."""
        name = Path(path).name
        return cls((ImageFile(im.image_id, Path(root) / im.file_path / im.file_name,
                              listed=f"{name} image {im.image_id}") for im in images),
                   str(path))

    @classmethod
    def from_folder(cls, root: str | Path) -> ImageIndex:
        """Every image file directly under ``root``, its id from the file stem
        (``2248275918.jpg`` → 2248275918, ``COCO_val2014_000000060623.jpg`` → 60623).

        Raises:
            VlpError: ``root`` is no folder, holds no image, or two files give one id.
        """
        root = Path(root)
        if not root.is_dir():
            raise input_error(root, None, "not a folder of images (data.image_root)")
        files: dict[int, ImageFile] = {}
        for file in sorted(root.iterdir()):
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                image_id = parse_image_id(file.stem)
            except ValueError:
                continue  # not named by an id: no record can ask for it
            if image_id in files:
                raise input_error(file, None, f"gives image id {image_id}, as "
                                  f"{files[image_id].path.name} does; list the images in a "
                                  "COCO-style file (data.images) to tell them apart")
            files[image_id] = ImageFile(image_id, file, listed=f"folder {root}")
        if not files:
            raise input_error(root, None, "holds no image file named by an id "
                              f"({', '.join(IMAGE_SUFFIXES[:3])}, …) (data.image_root)")
        return cls(files.values(), str(root))

    def file(self, image_id: int, record: str | None = None) -> ImageFile:
        """The file of ``image_id``.

        Raises:
            VlpError: the id is not in the index, naming the record that wanted it.
        """
        found = self.files.get(image_id)
        if found is None:
            wanted = f" (wanted by {record})" if record else ""
            raise VlpError(f"{self.source}: no image with id {image_id}{wanted}; "
                           f"it lists {len(self.files)} images")
        return found

    def require(self, image_ids: Iterable[int], what: str) -> None:
        """Every id of ``image_ids`` must be listed; the first missing one is one line.

        Args:
            image_ids: ids the records ask for.
            what: the records, for the message (e.g. ``vqa train``).
        """
        missing = sorted(set(image_ids) - set(self.files))
        if missing:
            raise VlpError(f"{self.source}: no image with id {missing[0]} ({len(missing)} "
                           f"images of {what} are not listed)")

    def open(self, image_id: int, record: str | None = None) -> Image.Image:
        """Decode the image of ``image_id`` as RGB; a listed size must match the file's.

        Raises:
            VlpError: unlisted id, missing, truncated or undecodable file, or a size other
                than listed — one line naming the file and the record that wanted it.
        """
        f = self.file(image_id, record)
        wanted = record or f.listed
        image = load_image(f.path, wanted)
        if f.width is not None and f.height is not None:
            try:
                check_image_size(f.path, image, f.width, f.height, self.source)
            except VlpError as err:
                raise VlpError(f"{err} (wanted by {wanted})") from None
        return image

    def require_files(self, image_ids: Iterable[int], what: str) -> None:
        """Every image of ``image_ids`` listed and its file present: checked before a run
        or an extraction reads any (decoding errors still come when an image is read).

        Raises:
            VlpError: the first unlisted id, or the first missing file with where it is
                listed, and how many are missing.
        """
        ids = sorted(set(image_ids))
        self.require(ids, what)
        missing = [f for f in (self.files[i] for i in ids) if not f.path.is_file()]
        if missing:
            first = missing[0]
            what_is = "is a directory, not an image" if first.path.is_dir() else "not found"
            raise VlpError(f"{first.path}: image file {what_is} (listed in {first.listed}, id "
                           f"{first.image_id}; {len(missing)} of the {len(ids)} images of "
                           f"{what} are missing)")
