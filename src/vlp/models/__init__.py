"""Model registry: architecture name → builder. Filled by explicit imports."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vlp.errors import VlpError
from vlp.models.config import ModelConfig
from vlp.models.encoder import VLEncoder
from vlp.models.outputs import VLOutput
from vlp.models.presets import PRESETS, preset_config, register_preset
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


def create_model(name: str, **overrides: Any) -> VLEncoder:
    """Build the preset ``name`` (:data:`PRESETS`), its fields replaced by ``overrides``,
    e.g. ``create_model("uniter_base", num_layers=2)``.

    Raises:
        VlpError: an unknown preset (one line listing the known ones), or an override
            that is no field or out of range.
    """
    return build_model(preset_config(name, **overrides))


__all__ = ["MODELS", "PRESETS", "ModelConfig", "VLEncoder", "VLOutput", "build_model",
           "create_model", "preset_config", "register_preset"]
