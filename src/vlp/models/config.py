"""The model config: one dataclass for every architecture, one default per field."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class ModelConfig:
    """Architecture hyper-parameters.

    Fields left at 0 (vocabulary size, region feature size, region classes) are
    filled from the tokenizer and the feature store when the model is built.
    """

    arch: str = "single_stream"
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 1024
    dropout: float = 0.1
    max_positions: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    pooler: Literal["cls", "mean"] = "cls"
    vocab_size: int = 0
    pad_id: int = 0
    visual: Literal["regions"] = "regions"
    region_feature_dim: int = 0
    num_region_classes: int = 0
    loc_dim: Literal[5, 7] = 7
