"""Building a whole world: draw every image (in worker processes), then write its images,
captions, scenes and every task file into a temporary directory renamed into place.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vlp.data.tokenizer import Tokenizer
from vlp.errors import VlpError
from vlp.fileio import atomic_path, claim_output
from vlp.world.captions import make_captions
from vlp.world.files import GENERATOR_NAME, file_name, split_of, split_sizes, write_json
from vlp.world.generate import generate_scene, image_rng
from vlp.world.render import render_scene
from vlp.world.scene import Scene
from vlp.world.tasks.coco import first_ann_ids, write_coco
from vlp.world.tasks.common import ImageTasks, MadeImage, TaskImage
from vlp.world.tasks.nlvr2 import write_nlvr2
from vlp.world.tasks.refcoco import ref_expressions, write_refcoco
from vlp.world.tasks.snli_ve import ve_entries, write_snli_ve
from vlp.world.tasks.vcr import vcr_item, write_vcr
from vlp.world.tasks.vqa import vqa_entries, write_vqa
from vlp.world.vocab import COLOURS, GENERATOR_VERSION, MAX_SIZE, MIN_SIZE, SHAPES, SIZES


def image_tasks(seed: int, image_id: int, scene: Scene, captions: Sequence[str]) -> ImageTasks:
    """The task content of image ``image_id`` (from its own random streams).

    Args:
        seed: the world's seed.
        image_id: the image's id.
        scene: its scene.
        captions: its captions, in ``captions.json`` order (SNLI-VE's premises).
    """
    return ImageTasks(vqa_entries(seed, image_id, scene),
                      ve_entries(seed, image_id, scene, captions),
                      ref_expressions(seed, image_id, scene), vcr_item(seed, image_id, scene))


def write_task_files(root: Path, images: Sequence[TaskImage], seed: int) -> list[str]:
    """Write every task file of a world.

    Args:
        root: the world directory (``annotations/`` must exist).
        images: every image of the world, in id order.
        seed: the world's seed.

    Returns:
        The task files' paths relative to ``root`` (VCR's metadata folder not itemised).
    """
    ann = root / "annotations"
    names = [*write_vqa(ann, images, seed), *write_snli_ve(ann, images),
             *write_nlvr2(ann, images, seed), *write_refcoco(ann, images),
             *write_vcr(root, images)]
    return [f"annotations/{n}" for n in names]


def _make_range(job: tuple[Path, int, int, int, int]) -> list[MadeImage]:
    """Generate, draw and save images ``start`` … ``stop - 1`` (one worker's share)."""
    images, seed, size, start, stop = job
    made = []
    for image_id in range(start, stop):
        scene = generate_scene(seed, image_id, size)
        render_scene(scene, seed, image_id).save(images / file_name(image_id), format="PNG")
        captions = make_captions(scene, image_rng(seed, image_id, "text"))
        made.append(MadeImage(image_id, scene, captions,
                              image_tasks(seed, image_id, scene, captions)))
    return made


def _make_all(images: Path, n_images: int, seed: int, size: int, workers: int) -> list[MadeImage]:
    # several jobs per worker keep them all busy to the end; 250 images bound a job's memory
    chunk = max(1, min(250, -(-n_images // (4 * workers))))
    jobs = [(images, seed, size, start, min(start + chunk, n_images + 1))
            for start in range(1, n_images + 1, chunk)]
    if workers <= 1 or len(jobs) == 1:
        return [m for job in jobs for m in _make_range(job)]
    # spawn: the caller may hold torch's threads, which fork can deadlock
    with multiprocessing.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
        return [m for part in pool.imap(_make_range, jobs) for m in part]


def _world_json(n_images: int, seed: int, size: int, tasks: list[str]) -> dict[str, Any]:
    return {"generator": GENERATOR_NAME, "version": GENERATOR_VERSION, "seed": seed,
            "images": n_images, "size": size, "splits": split_sizes(n_images),
            "shapes": list(SHAPES), "colours": list(COLOURS), "sizes": list(SIZES),
            "tasks": tasks}


def _write_files(root: Path, made: list[MadeImage], seed: int, size: int) -> None:
    (root / "annotations").mkdir()
    write_coco(root / "annotations", made, seed, size)
    scenes = {str(m.image_id): m.scene.to_json() for m in made}
    write_json(root / "scenes.json", {"version": GENERATOR_VERSION, "size": size,
                                      "scenes": scenes})
    images = [TaskImage(m.image_id, m.scene, m.tasks, split, first)
              for m, split, first in zip(made, split_of(len(made)), first_ann_ids(made),
                                         strict=True)]
    tasks = write_task_files(root, images, seed)
    write_json(root / "world.json", _world_json(len(made), seed, size, tasks), indent=2)


def _check_make_args(out: Path, n_images: int, seed: int, size: int, workers: int,
                     overwrite: bool) -> None:
    if n_images < 1:
        raise VlpError(f"--images: expected at least 1, found {n_images}")
    if seed < 0:
        raise VlpError(f"--seed: expected a non-negative integer, found {seed}")
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise VlpError(f"--size: expected {MIN_SIZE} to {MAX_SIZE} pixels, found {size}")
    if workers < 1:
        raise VlpError(f"--workers: expected at least 1, found {workers}")
    # the world replaces ``out`` as a whole; never replace something the user made
    claim_output(out, overwrite=overwrite)


def make_world(out: Path, n_images: int, seed: int = 0, size: int = 64,
               workers: int = 1, overwrite: bool = False) -> Path:
    """Generate a world of ``n_images`` images and write it to ``out``: the images, the
    caption and task files in their published formats, and ``vocab.txt`` (WordPiece on the
    training split's captions, questions and hypotheses, :func:`write_vocabulary`).

    Everything is built in a temporary directory beside ``out`` and renamed into place, so
    an interrupted run leaves nothing behind. The output is byte-identical for equal
    ``(n_images, seed, size)``, whatever ``workers`` is.

    Args:
        out: the world directory; must not exist or be empty, unless ``overwrite``.
        n_images: number of images (ids 1 … n_images).
        seed: the world's seed.
        size: image side in pixels.
        workers: processes that draw images.
        overwrite: replace an existing ``out`` (once the new world is complete).

    Returns:
        ``out``.

    Raises:
        VlpError: a bad argument, or ``out`` exists and is not empty.
    """
    out = Path(out)
    _check_make_args(out, n_images, seed, size, workers, overwrite)
    with atomic_path(out) as tmp:
        (tmp / "images").mkdir(parents=True)
        made = _make_all(tmp / "images", n_images, seed, size, workers)
        _write_files(tmp, made, seed, size)
        write_vocabulary(tmp)
    return out


VOCAB_SIZE = 1000  # WordPieces: the world's words whole, with room to spare


def training_texts(world: Path) -> list[str]:
    """The training split's captions, VQA questions and SNLI-VE hypotheses."""
    from vlp.data.formats.karpathy import read_karpathy
    from vlp.data.formats.snli_ve import read_snli_ve
    from vlp.data.formats.vqa import read_vqa

    ann = world / "annotations"
    texts = [c for im in read_karpathy(ann / "dataset_world.json") if im.split == "train"
             for c in im.captions]
    texts += [q.question for q in read_vqa(ann / "vqa_train_questions.json")]
    texts += [r.hypothesis for r in read_snli_ve(ann / "snli_ve_train.jsonl")]
    return texts


def write_vocabulary(world: Path) -> Tokenizer:
    """``world/vocab.txt``: WordPiece on :func:`training_texts` (the same texts give the same
    bytes), so every command runs on a new world as written."""
    return Tokenizer.train(training_texts(world), world / "vocab.txt", vocab_size=VOCAB_SIZE)
