"""Model registry: architecture name → builder. Filled by explicit imports."""

from __future__ import annotations

from collections.abc import Callable

from vlp.errors import VlpError
from vlp.models.config import ModelConfig
from vlp.models.encoder import VLEncoder
from vlp.models.outputs import VLOutput
from vlp.models.single_stream import build_single_stream
from vlp.models.two_stream import build_two_stream

MODELS: dict[str, Callable[[ModelConfig], VLEncoder]] = {
    "single_stream": build_single_stream,
    "two_stream": build_two_stream,
}


def build_model(cfg: ModelConfig) -> VLEncoder:
    """Build the architecture named by ``cfg.arch``."""
    if cfg.arch not in MODELS:
        raise VlpError(f"model.arch: unknown architecture '{cfg.arch}' "
                       f"(known: {', '.join(sorted(MODELS))})")
    needed = ("vocab_size", "region_feature_dim") if cfg.visual == "regions" else ("vocab_size",)
    for name in needed:
        if getattr(cfg, name) <= 0:
            raise VlpError(f"model.{name} must be set (it is filled from the tokenizer / "
                           "feature store when training through vlp)")
    return MODELS[cfg.arch](cfg)


__all__ = ["MODELS", "ModelConfig", "VLEncoder", "VLOutput", "build_model"]
