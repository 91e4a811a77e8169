"""Config dataclasses of a pre-training run (loaded from YAML by ``vlp.config``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from vlp.models.config import ModelConfig


@dataclass
class DataConfig:
    """Where the pairs come from and how they are batched.

    ``world`` names a ``vlp world`` directory and fills any of ``captions``,
    ``features`` and ``vocab`` left empty.
    """

    world: str = ""
    captions: str = ""
    features: str = ""
    vocab: str = ""
    train_splits: list[str] = field(default_factory=lambda: ["train", "restval"])
    eval_split: str = "val"
    eval_pairs: int = 1000
    max_text_len: int = 40
    max_regions: int = 100
    token_budget: int = 4096
    batch_size: int = 64
    bucket_size: int = 2048
    num_workers: int = 0

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
        })


@dataclass
class ObjectivesConfig:
    """Which objectives, how they are mixed, and how inputs are masked.

    ``weights`` maps objective name → sampling ratio (``mix: sample``, UNITER: one
    objective per batch) or loss weight (``mix: sum``, SOHO: all on every batch).

    ``itm_hard_negatives``: ITM's mismatched pairs take, instead of a random image, an
    image of the batch drawn by contrastive similarity to the text (ALBEF); needs ``itc``
    among the objectives.
    """

    weights: dict[str, float] = field(
        default_factory=lambda: {"mlm": 2.0, "mrfr": 1.0, "mrc_kl": 1.0, "itm": 1.0})
    mix: Literal["sample", "sum"] = "sample"
    masking: Literal["conditional", "joint"] = "conditional"
    mask_prob: float = 0.15
    itm_neg_prob: float = 0.5
    itm_hard_negatives: bool = False


@dataclass
class TrainConfig:
    """Optimisation, precision, checkpoints and logging.

    ``init_text`` starts the text side from BERT: a Hugging Face BERT directory, a
    ``vlp import`` output, or ``minilm`` (the packaged all-MiniLM-L6-v2). Its sizes replace
    the model's text-side sizes, and its ``vocab.txt`` is used unless ``data.vocab`` is set.

    ``init`` starts the whole model from an imported vision-language model (a ``vlp import``
    output or a Hugging Face directory of one, e.g. VisualBERT): its config replaces the
    ``model`` section, its weights and any heads of the configured objectives are loaded,
    and the data's feature size and vocabulary must match it.
    """

    out: str = "runs/pretrain"
    init_text: str = ""
    init: str = ""
    seed: int = 0
    steps: int = 1000
    lr: float = 1e-4
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    warmup_steps: int = 100
    grad_accum: int = 1
    grad_clip: float = 2.0
    precision: Literal["fp32", "bf16", "fp16"] = "bf16"
    device: str = "auto"
    log_every: int = 10
    eval_every: int = 0
    save_every: int = 200
    keep_checkpoints: int = 2
    tensorboard: bool = True
    progress: bool = True


@dataclass
class RunConfig:
    """What every training run has: a model, data and the optimisation."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class PretrainConfig(RunConfig):
    """A whole pre-training experiment."""

    objectives: ObjectivesConfig = field(default_factory=ObjectivesConfig)


@dataclass
class TaskConfig:
    """Which downstream task, from which files, with how many labels.

    ``files`` maps each of the task's file roles to a path template where ``{split}``
    stands for the split's name (e.g. ``questions: data/vqa/v2_OpenEnded_mscoco_{split}
    2014_questions.json``); roles left out come from ``data.world``.

    Attributes:
        name: ``vqa``, ``retrieval``, ``ve``, ``nlvr2``, ``refcoco`` or ``vcr``.
        files: role → path template.
        train_limit: the labelled budget: first N training records (0: all).
        eval_limit: records evaluated (retrieval: images in the ranking pool; 0: all).
        min_answer_count: VQA — annotator answers an answer needs to enter the vocabulary.
        eval_texts_per_image: retrieval — captions per image kept in the ranking pool.
        rank: retrieval — ``itm`` (cross-encoder over every pair) or ``itc`` (dual-encoder
            embeddings; needs a model that encodes text and image apart).
        hard_negatives: retrieval (``rank: itm``) — K > 0 trains on UNITER's hard
            negatives: of K other images in the batch, the one the model scores highest;
            0 draws negative images at random from the split.
        vcr_mode: VCR — ``q2a`` (question → answer) or ``qa2r`` (question and right answer
            → rationale); Q→AR combines the two runs' predictions.
    """

    name: str = "vqa"
    files: dict[str, str] = field(default_factory=dict)
    train_limit: int = 0
    eval_limit: int = 1000
    min_answer_count: int = 1
    eval_texts_per_image: int = 5
    rank: Literal["itm", "itc"] = "itm"
    hard_negatives: int = 0
    vcr_mode: Literal["q2a", "qa2r"] = "q2a"


@dataclass
class FinetuneConfig(RunConfig):
    """Fine-tuning (and evaluating) on one downstream task: ``data.train_splits[0]`` is
    trained on, ``data.eval_split`` is evaluated."""

    task: TaskConfig = field(default_factory=TaskConfig)
