"""A run's directory: claiming it for a new run, what a resume may change, and the
portable record of its config, vocabulary and data checksums."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any, TypeVar, cast

from vlp.config import read_yaml
from vlp.errors import VlpError, data_warning
from vlp.fileio import remove_stale_temporaries, sha256_file, write_text_atomic
from vlp.models.config import ADJUSTABLE_FIELDS
from vlp.train.config import RunConfig


def _is_run(out: Path) -> bool:
    """Whether ``out`` holds a vlp run: a checkpoint history, or a ``config.yaml`` whose
    sections are a run config's."""
    if (out / "checkpoints" / "history.json").is_file():
        return True
    try:
        doc = read_yaml(out / "config.yaml")
    except VlpError:
        return False
    return {"model", "data", "train"} <= set(doc)


def claim_run_dir(out: Path, resume: bool, overwrite: bool, inputs: list[str]) -> None:
    """Make ``out`` this run's directory: a new run needs it empty (or ``overwrite`` of
    an earlier vlp run there); ``resume`` takes it as it is. Then the temporaries a killed
    run left in it are cleaned up.

    Args:
        out: ``train.out``.
        resume: continue the run in ``out``.
        overwrite: replace the run in ``out``.
        inputs: paths the run reads (``train.init``, data files): ``out`` may not be or
            hold one of them.

    Raises:
        VlpError: ``out`` holds something and neither ``resume`` nor ``overwrite`` was
            given; ``overwrite`` was given for a directory that is not a vlp run; or ``out``
            is or holds an input.
    """
    target = out.resolve()
    for src in (p for p in inputs if p):
        source = Path(src).resolve()
        if target == source or target in source.parents:
            raise VlpError(f"train.out: {out} {'is' if target == source else 'holds'} the "
                           f"input {src}; choose another train.out")
    if not resume and out.exists() and not (out.is_dir() and not any(out.iterdir())):
        if not out.is_dir():
            raise VlpError(f"train.out: {out} is a file; expected a run directory")
        if not overwrite:
            raise VlpError(f"train.out: {out} already holds a run; continue it with "
                           "--resume, replace it with --overwrite, or choose another train.out")
        if not _is_run(out):
            raise VlpError(f"train.out: {out} is not empty and is not a vlp run directory "
                           "(no checkpoints/history.json or run config.yaml); --overwrite "
                           "deletes runs only")
        shutil.rmtree(out)
    for directory in (out, out / "checkpoints"):
        remove_stale_temporaries(directory)


# settings that change what is shown or kept, not what is trained; and the vocabulary's
# path (a run keeps its own copy, whose bytes keep_vocabulary compares)
_NOT_TRAINING = frozenset(f"train.{k}" for k in (
    "out", "progress", "tensorboard", "log_every", "save_every", "keep_checkpoints",
    "device", "verify_checkpoint")) | {"data.num_workers", "data.verify_features", "data.strict",
                                       "data.vocab"}
# the path fields portable_config makes absolute (but train.out and data.vocab): a run
# written before configs recorded absolute paths names them relative
_PATH_FIELDS = frozenset({"data.world", "data.captions", "data.features", "data.images",
                    "data.image_root", "train.init", "train.init_text", "train.init_vision",
                    "model.backbone_weights"})


def _same_path(key: str, was: Any, now: Any) -> bool:
    return key in _PATH_FIELDS and isinstance(was, str) and isinstance(now, str) and \
        bool(was) and bool(now) and Path(was).resolve() == Path(now).resolve()

RunT = TypeVar("RunT", bound=RunConfig)
VOCAB = "vocab.txt"  # the run's own copy of its vocabulary
DATA = "data.json"  # the checksums of the files the run reads its examples from


def _absolute(value: str, must_exist: bool = False) -> str:
    """``value`` as an absolute path (relative to the working directory); "" stays "", and
    with ``must_exist`` a value that names no file (``minilm``) stays as it is."""
    if not value or Path(value).is_absolute() or (must_exist and not Path(value).exists()):
        return value
    return str(Path(value).resolve())


def portable_config(cfg: RunT, out: Path) -> RunT:
    """``cfg`` as a run records it in ``config.yaml``: every path absolute, so the run can
    be evaluated, fine-tuned from or resumed from any working directory, and the
    vocabulary the run's own copy (``out/vocab.txt``, which :func:`keep_vocabulary`
    writes)."""
    d = cfg.data
    data = dataclasses.replace(
        d, world=_absolute(d.world), captions=_absolute(d.captions),
        features=_absolute(d.features), images=_absolute(d.images),
        image_root=_absolute(d.image_root),
        split_files={k: _absolute(v) for k, v in d.split_files.items()},
        vocab=str((Path(out) / VOCAB).resolve()) if d.vocab else "")
    t = cfg.train
    train = dataclasses.replace(
        t, out=_absolute(t.out), init=_absolute(t.init, must_exist=True),
        init_text=_absolute(t.init_text, must_exist=True),
        init_vision=_absolute(t.init_vision, must_exist=True))
    model = dataclasses.replace(cfg.model, backbone_weights=_absolute(
        cfg.model.backbone_weights, must_exist=True))
    out_cfg = dataclasses.replace(cfg, data=data, train=train, model=model)
    task = getattr(cfg, "task", None)  # fine-tuning runs: the task's annotation files
    if task is not None:
        task = dataclasses.replace(task, files={k: _absolute(v) for k, v in task.files.items()})
        out_cfg = dataclasses.replace(out_cfg, task=task)  # type: ignore[call-arg]
    return cast(RunT, out_cfg)


def read_vocabulary(vocab: str) -> bytes | None:
    """The bytes of the run's vocabulary file, read when the run is built (before
    ``--overwrite`` may remove a directory that holds it); None without one."""
    return Path(vocab).read_bytes() if vocab and Path(vocab).is_file() else None


def keep_vocabulary(vocab: bytes | None, out: Path, resume: bool, named: str) -> None:
    """Write the run's vocabulary (``vocab``, read from ``named``) to ``out/vocab.txt``.

    Raises:
        VlpError: a resumed run's own copy differs from it: the embeddings were trained on
            other token ids.
    """
    from vlp.fileio import atomic_path

    own = Path(out) / VOCAB
    if vocab is None:
        return
    if own.is_file():
        if own.read_bytes() == vocab:
            return
        if resume:
            raise VlpError(f"data.vocab: {named} is not the vocabulary {out} was trained "
                           f"with ({own}); resume with data.vocab={own}")
    with atomic_path(own) as tmp:
        tmp.write_bytes(vocab)


def data_files(cfg: RunConfig) -> dict[str, Path]:
    """The files a run reads its examples from, by the config field that names them:
    caption files, the images list, the region store's ``meta.json`` (which holds the
    checksums of its arrays) and a task's annotation files of the training and evaluation
    splits (``task.files.ROLE:SPLIT``). Image files themselves are not listed (a store of
    photos may hold millions)."""
    d = cfg.data.resolved()
    found: dict[str, Path] = {}
    named = {"data.captions": d.captions, "data.images": d.images,
             **{f"data.split_files.{k}": v for k, v in d.split_files.items()},
             "data.features": str(Path(d.features) / "meta.json") if d.features else ""}
    for key, value in named.items():
        if value and Path(value).is_file():
            found[key] = Path(value)
    task = getattr(cfg, "task", None)
    if task is not None:  # fine-tuning: the task's files of the splits it reads
        from vlp.tasks import get_task

        for split in dict.fromkeys((d.train_splits[0], d.eval_split)):
            for role, path in get_task(task.name).files(task, d.world, split).items():
                if path.is_file():
                    found.setdefault(f"task.files.{role}:{split}", path)
    return found


def data_checksums(cfg: RunConfig) -> dict[str, dict[str, Any]]:
    """:func:`data_files` with the path, size and sha256 of each (``RUN/data.json``)."""
    return {key: {"path": str(path.resolve()), "bytes": path.stat().st_size,
                  "sha256": sha256_file(path)} for key, path in data_files(cfg).items()}


def keep_data_checksums(cfg: RunConfig, out: Path, resume: bool) -> None:
    """Record the checksums of the run's data in ``out/data.json``; a resumed run first
    warns, one line per file, about data that changed since they were recorded (the run
    goes on with the new contents: ``--strict`` makes it an error)."""
    own = Path(out) / DATA
    now = data_checksums(cfg)
    if resume and own.is_file():
        try:
            before = json.loads(own.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            before = {}
        for key, was in (before if isinstance(before, dict) else {}).items():
            new = now.get(key)
            if isinstance(was, dict) and new is not None and was.get("sha256") != new["sha256"]:
                data_warning(new["path"], None, f"changed since {out} recorded it as {key} "
                             f"(sha256 {str(was.get('sha256'))[:12]}…, now "
                             f"{new['sha256'][:12]}…); the resumed run reads it as it is now")
    write_text_atomic(own, json.dumps(now, indent=1) + "\n")


def config_changes(before: dict[str, Any], now: dict[str, Any], saved: Path
                   ) -> dict[str, tuple[Any, Any]]:
    """Training fields that differ between a checkpoint's config (``before``, read from
    ``saved``) and this run's (``now``), as ``section.field`` → (was, now).

    Raises:
        VlpError: a field of the model section changed (the weights would not fit it;
            those of ``ADJUSTABLE_FIELDS``, which change no weight, may).
    """
    # a field the saved config lacks (written by an older vlp) is not a change
    changes = {key: pair for key, pair in _flat_diff(before, now).items()
               if key not in _NOT_TRAINING and pair[0] is not None
               and not _same_path(key, *pair)}
    for key, (was, new) in changes.items():
        if key.startswith("model.") and key.removeprefix("model.") not in ADJUSTABLE_FIELDS:
            raise VlpError(f"--resume: {key} is {was!r} in {saved} but {new!r} now; a "
                           "checkpoint resumes only into the model it was saved from "
                           "(start a new run, or fine-tune from it with train.init)")
    return changes


def _flat_diff(before: dict[str, Any], after: dict[str, Any], prefix: str = ""
               ) -> dict[str, tuple[Any, Any]]:
    """``section.field`` → (before, after) for every leaf that differs."""
    diff: dict[str, tuple[Any, Any]] = {}
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict) and key != "weights":
            diff.update(_flat_diff(a, b, f"{name}."))
        elif a != b and not (isinstance(a, list) and isinstance(b, tuple) and list(b) == a):
            diff[name] = (a, b)
    return diff


__all__ = ["DATA", "VOCAB", "claim_run_dir", "config_changes", "data_checksums", "data_files",
           "keep_data_checksums", "keep_vocabulary", "portable_config", "read_vocabulary"]
