"""Config dataclasses of a pre-training or fine-tuning run (loaded from YAML by
``vlp.config``); the ``task`` section is :class:`vlp.tasks.config.TaskConfig`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from vlp.config import FieldError, Range, check, check_fields, check_value, limits, ranged
from vlp.errors import VlpError
from vlp.models.config import ModelConfig
from vlp.tasks.config import TaskConfig  # the task section, re-exported for FinetuneConfig

# what each path of the data section names, for the message when one is empty
_PATHS = {"captions": "a caption file (Karpathy, COCO captions, an ALBEF/BLIP list or "
                      "JSONL), or set data.split_files",
          "image_root": "the folder of the image files",
          "features": "a region feature store directory",
          "vocab": "a WordPiece vocab.txt"}


@dataclass
class DataConfig:
    """Where the pairs come from and how they are batched.

    ``world`` names a ``vlp world`` directory and fills any of ``captions``,
    ``features``, ``vocab``, ``images`` and ``image_root`` left empty.

    Pixel models (``model.visual`` patches or grid) read image files instead of
    ``features``: ``images`` is a COCO-style ``images`` list (a COCO captions or instances
    file, or a file of that list alone) whose ``file_name`` s are relative to
    ``image_root`` (by default the list's folder). Without ``images``, a Karpathy
    ``captions`` file's ``filepath/filename`` are read under ``image_root``, and otherwise
    every image directly in ``image_root`` is found by the id in its name
    (``2248275918.jpg``). ``resize``: ``square`` — ``model.image_size`` on both sides;
    ``shorter`` — the shorter side to it and the longer at most ``max_image_size`` (0:
    ``image_size`` × 1333 / 800), as ViLT, each side then rounded down to a multiple of
    ``size_divisor`` if set (ViLT's own and Hugging Face's processor: 32; 0: images are
    padded to whole patches instead). ``augment`` turns on, for training batches, a
    random resized crop (``crop_scale`` of the area), colour jitter (``jitter``) and, with
    ``flip: swap``, a horizontal flip with "left" and "right" swapped in the caption
    (pre-training only: a task's label may name a side). ``image_cache_mb`` keeps that
    many MB of decoded images in memory, per loader worker.

    ``captions`` is a caption file in any published format
    (:mod:`vlp.data.formats.caption_files`: Karpathy, COCO captions, the ALBEF / BLIP /
    LAVIS list, JSONL ``{image, text}``), told apart by its content unless
    ``caption_format`` names it. A Karpathy file gives each image its split; a file of one
    split belongs to the split its name says (``coco_karpathy_test.json``), else ``train``.
    ``split_files`` (``{train: …, val: …}``) gives one file per split instead, and then
    ``captions`` is not read.

    ``max_text_len`` counts [CLS] and [SEP] (so at least 3: one token between them).
    ``token_budget`` > 0 batches by padded positions and must hold one whole caption
    (``max_text_len``); 0 batches ``batch_size`` pairs. ``verify_features`` checks every
    array of the feature store against its recorded sha256 when the run opens it.
    ``strict`` makes data warnings (empty captions, duplicate ids, VQA answer counts other
    than ten, boxes outside the image) errors, as ``vlp --strict`` does.
    """

    world: str = ""
    captions: str = ""
    caption_format: Literal["auto", "karpathy", "coco", "caption_list", "jsonl"] = "auto"
    split_files: dict[str, str] = field(default_factory=dict)
    features: str = ""
    vocab: str = ""
    images: str = ""
    image_root: str = ""
    resize: Literal["square", "shorter"] = "square"
    max_image_size: int = ranged(0, ge=0)
    size_divisor: int = ranged(0, ge=0)
    augment: bool = False
    crop_scale: list[float] = field(default_factory=lambda: [0.5, 1.0],
                                    metadata=limits(gt=0, le=1))
    jitter: float = ranged(0.0, ge=0, lt=1)
    flip: Literal["none", "swap"] = "none"
    image_cache_mb: int = ranged(0, ge=0)
    train_splits: list[str] = field(default_factory=lambda: ["train", "restval"])
    eval_split: str = "val"
    eval_pairs: int = ranged(1000, ge=1)
    max_text_len: int = ranged(40, ge=3)
    max_regions: int = ranged(100, ge=1)
    token_budget: int = ranged(4096, ge=0)
    batch_size: int = ranged(64, ge=1)
    bucket_size: int = ranged(2048, ge=0)
    num_workers: int = ranged(0, ge=0, le=1024)
    verify_features: bool = False
    strict: bool = False

    def __post_init__(self) -> None:
        check_fields(self, "data")
        check(bool(self.train_splits), "data.train_splits", "empty; expected at least one "
              "split name, e.g. [train]")
        for i, split in enumerate(self.train_splits):
            check(bool(split.strip()), f"data.train_splits[{i}]", "empty split name")
        check(bool(self.eval_split.strip()), "data.eval_split", "empty; expected a split name, "
              "e.g. val")
        check(len(self.crop_scale) == 2 and self.crop_scale[0] <= self.crop_scale[1],
              "data.crop_scale", f"expected [smallest, largest] share of the image area, "
              f"got {self.crop_scale!r}")
        check(self.token_budget == 0 or self.token_budget >= self.max_text_len,
              "data.token_budget", f"{self.token_budget} positions cannot hold one caption "
              f"of data.max_text_len {self.max_text_len}; set it to at least "
              f"{self.max_text_len}, or to 0 to batch data.batch_size pairs")

    def require(self, name: str) -> str:
        """The path field ``name`` (``captions``, ``features`` or ``vocab``), which must be
        set: call it on :meth:`resolved` data where a run reads that file.

        Raises:
            VlpError: the field is empty, naming it and what to set.
        """
        value: str = getattr(self, name)
        if not value.strip():
            raise VlpError(f"data.{name}: empty; set it to {_PATHS.get(name, 'a path')}, or "
                           "set data.world to a 'vlp world' directory that holds one")
        return value

    def caption_files(self, splits: list[str]) -> list[tuple[str, str | None]]:
        """The caption files that hold ``splits``, each with the split it is read as
        (None: the file says, see the class docstring).

        Raises:
            VlpError: ``split_files`` has no file for one of ``splits``, or neither it nor
                ``captions`` is set.
        """
        if not self.split_files:
            return [(self.require("captions"), None)]
        wanted = [s for s in splits if s in self.split_files]
        if not wanted:
            raise VlpError(f"data.split_files: no file for split(s) {', '.join(splits)} "
                           f"(it names {', '.join(sorted(self.split_files))})")
        return [(self.split_files[s], s) for s in wanted]

    def resolved(self) -> DataConfig:
        """A copy with paths filled from ``world``."""
        if not self.world:
            return self
        root = Path(self.world)
        return DataConfig(**{
            **self.__dict__,
            "captions": self.captions or str(root / "annotations" / "dataset_world.json"),
            "features": self.features or str(root / "features"),
            "vocab": self.vocab or str(root / "vocab.txt"),
            "images": self.images or str(root / "annotations" / "captions.json"),
            "image_root": self.image_root or str(root / "images"),
        })


@dataclass
class ObjectivesConfig:
    """Which objectives, how they are mixed, and how inputs are masked.

    ``weights`` maps objective name → sampling ratio (``mix: sample``, UNITER: one
    objective per batch) or loss weight (``mix: sum``, SOHO: all on every batch).

    ``sampling``: how a batch's pairs are made for pair objectives (ITM). ``pairs`` —
    UNITER: each caption with its image, or with a foreign image for about
    ``itm_neg_prob`` of them. ``soho`` — SOHO: each sampled image with two of its
    captions and two captions of other images (so a batch holds four rows per sampled
    pair: set ``data.batch_size`` / ``data.token_budget`` for a quarter of the rows);
    masked objectives (MLM, MVM) score positives only. SOHO trains MLM + MVM + ITM with
    equal weights and ``mix: sum``.

    ``itm_hard_negatives``: ITM's mismatched pairs take, instead of a random image, an
    image of the batch drawn by contrastive similarity to the text (ALBEF); needs ``itc``
    among the objectives.
    """

    weights: dict[str, float] = field(
        default_factory=lambda: {"mlm": 2.0, "mrfr": 1.0, "mrc_kl": 1.0, "itm": 1.0})
    mix: Literal["sample", "sum"] = "sample"
    masking: Literal["conditional", "joint"] = "conditional"
    mask_prob: float = ranged(0.15, gt=0, lt=1)
    itm_neg_prob: float = ranged(0.5, ge=0, le=1)
    sampling: Literal["pairs", "soho"] = "pairs"
    itm_hard_negatives: bool = False

    def __post_init__(self) -> None:
        from vlp.objectives import OBJECTIVES  # the registry imports the model code

        check_fields(self, "objectives")
        known = ", ".join(sorted(OBJECTIVES))
        check(bool(self.weights), "objectives.weights", f"empty; name at least one of {known}")
        for name, weight in self.weights.items():
            check(name in OBJECTIVES, f"objectives.weights.{name}",
                  f"unknown objective '{name}' (known: {known})")
            check_value(weight, Range(ge=0), f"objectives.weights.{name}")
        check(any(w > 0 for w in self.weights.values()), "objectives.weights",
              "every weight is 0; at least one objective needs a weight above 0")
        check(not self.itm_hard_negatives or {"itm", "itc"} <= set(self.weights),
              "objectives.itm_hard_negatives", "draws ITM negatives by ITC similarity: "
              "objectives.weights needs both itm and itc")
        check(self.sampling == "pairs" or not self.itm_hard_negatives, "objectives.sampling",
              "soho draws its own negative texts; it cannot be combined with "
              "objectives.itm_hard_negatives")
        check(self.sampling == "pairs" or self.mix == "sum", "objectives.sampling",
              "soho builds every batch for all objectives at once (four rows a pair); it "
              "needs objectives.mix: sum")


@dataclass
class TrainConfig:
    """Optimisation, precision, checkpoints and logging.

    ``init_text`` starts the text side from BERT: a Hugging Face BERT directory, a
    ``vlp import`` output, or ``minilm`` (the packaged all-MiniLM-L6-v2). Its sizes replace
    the model's text-side sizes, and its ``vocab.txt`` is used unless ``data.vocab`` is set.

    ``init_vision`` starts a patch model's visual side from a Hugging Face ViT directory
    (``ViTModel`` or ``ViTForImageClassification``), as ViLT starts from ViT: patch
    projection, [CLS], positions, every transformer layer and the final LayerNorm; the model
    section must have the ViT's sizes (``model.preset: vilt_base`` for ViT-B/32).

    ``init`` starts the whole model from an imported vision-language model (a ``vlp import``
    output or a Hugging Face directory of one, e.g. VisualBERT): its config replaces the
    ``model`` section, its weights and any heads of the configured objectives are loaded,
    and the data's feature size and vocabulary must match it. A ``model.dropout`` set in
    the YAML or an override still applies (it changes no weight); any other model field
    set there to another value than the init's gets a warning naming both. (A config
    built in Python has no record of what was set: the init's section stands whole.)

    ``freeze_backbone_steps``: a grid model's CNN backbone is not trained (no gradient,
    BatchNorm statistics kept) for the first that many steps, while the transformer
    learns to read it (SOHO); 0 trains it from the start.

    ``steps`` 0 builds the run without training it (``vlp evaluate``). A ``warmup_steps``
    given in a config must end by the end of the run (at most ``steps`` when that is above 0).
    ``grad_clip``, ``eval_every`` and ``save_every`` 0 turn clipping, evaluation and saving
    during the run off. ``verify_checkpoint`` compares every file of the checkpoint a
    ``--resume`` starts from with the sha256 recorded when it was written (sizes and
    headers are always checked).

    ``compile`` compiles each transformer layer with ``torch.compile`` (inductor, dynamic
    shapes: one compilation serves every batch size and length), fusing the LayerNorms,
    GELU, dropout and residuals around the matrix products. It needs a C++ compiler on CPU
    and costs a minute or more of compilation at the start of a run.
    """

    out: str = "runs/pretrain"
    init_text: str = ""
    init_vision: str = ""
    init: str = ""
    seed: int = ranged(0, ge=0)
    steps: int = ranged(1000, ge=0)
    lr: float = ranged(1e-4, gt=0, le=1)
    weight_decay: float = ranged(0.01, ge=0)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98], metadata=limits(ge=0, lt=1))
    warmup_steps: int = ranged(100, ge=0)
    grad_accum: int = ranged(1, ge=1)
    grad_clip: float = ranged(2.0, ge=0)
    freeze_backbone_steps: int = ranged(0, ge=0)
    precision: Literal["fp32", "bf16", "fp16"] = "bf16"
    compile: bool = False
    device: str = "auto"
    log_every: int = ranged(10, ge=1)
    eval_every: int = ranged(0, ge=0)
    save_every: int = ranged(200, ge=0)
    keep_checkpoints: int = ranged(2, ge=1)
    verify_checkpoint: bool = False
    tensorboard: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        check_fields(self, "train")
        check(bool(self.out.strip()), "train.out", "empty; expected the run's directory")
        check(len(self.betas) == 2, "train.betas", f"expected two numbers [beta1, beta2] in "
              f"[0, 1), got {self.betas!r}")
        check(_is_device(self.device), "train.device", "expected auto, cpu, cuda, cuda:N or "
              f"another torch device, got {self.device!r}")

    def check_chosen(self, chosen: set[str]) -> None:
        """Rules on the fields the user chose (``vlp.config.from_dict`` calls it): set in
        their config or an override, not repeated from a resumed run's record.

        A warm-up the user chose must end by the last step (the run reaches the peak rate);
        the default warm-up is left to the schedule on short runs, which only rise that far.
        """
        if "warmup_steps" in chosen and 0 < self.steps < self.warmup_steps:
            raise FieldError("train.warmup_steps", f"{self.warmup_steps} is above "
                             f"train.steps: {self.steps} (the warm-up must end by the end of "
                             "the run)")


def _is_device(name: str) -> bool:
    if name == "auto":
        return True
    import torch

    try:
        torch.device(name)
    except (RuntimeError, ValueError):
        return False
    return True


@dataclass
class RunConfig:
    """What every training run has: a model, data and the optimisation."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        check(self.data.max_text_len <= self.model.max_positions, "data.max_text_len",
              f"{self.data.max_text_len} is above model.max_positions "
              f"{self.model.max_positions} (the model has no position embedding beyond it)")


@dataclass
class PretrainConfig(RunConfig):
    """A whole pre-training experiment."""

    objectives: ObjectivesConfig = field(default_factory=ObjectivesConfig)


@dataclass
class FinetuneConfig(RunConfig):
    """Fine-tuning (and evaluating) on one downstream task: ``data.train_splits[0]`` is
    trained on, ``data.eval_split`` is evaluated."""

    task: TaskConfig = field(default_factory=TaskConfig)
