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
    """

    weights: dict[str, float] = field(
        default_factory=lambda: {"mlm": 2.0, "mrfr": 1.0, "mrc_kl": 1.0, "itm": 1.0})
    mix: Literal["sample", "sum"] = "sample"
    masking: Literal["conditional", "joint"] = "conditional"
    mask_prob: float = 0.15
    itm_neg_prob: float = 0.5


@dataclass
class TrainConfig:
    """Optimisation, precision, checkpoints and logging."""

    out: str = "runs/pretrain"
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
class PretrainConfig:
    """A whole pre-training experiment."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    objectives: ObjectivesConfig = field(default_factory=ObjectivesConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
