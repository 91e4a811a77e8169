"""Objective registry: name → builder(model config, model). Filled by explicit imports."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from vlp.errors import VlpError
from vlp.models.config import ModelConfig
from vlp.objectives.base import Objective, ObjectiveOutput
from vlp.objectives.itc import build_itc
from vlp.objectives.itm import build_itm
from vlp.objectives.mlm import build_mlm
from vlp.objectives.mrm import build_mrc, build_mrc_kl, build_mrfr
from vlp.objectives.pretraining import PretrainingModel, PretrainOutput
from vlp.objectives.wra import build_wra

OBJECTIVES: dict[str, Callable[[ModelConfig, nn.Module], Objective]] = {
    "mlm": build_mlm,
    "mrfr": build_mrfr,
    "mrc": build_mrc,
    "mrc_kl": build_mrc_kl,
    "itm": build_itm,
    "itc": build_itc,
    "wra": build_wra,
}


def build_objectives(names: list[str], cfg: ModelConfig, model: nn.Module) -> dict[str, Objective]:
    """Build the named objectives for ``model``."""
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown:
        raise VlpError(f"objectives: unknown objective '{unknown[0]}' "
                       f"(known: {', '.join(sorted(OBJECTIVES))})")
    return {name: OBJECTIVES[name](cfg, model) for name in names}


__all__ = ["OBJECTIVES", "Objective", "ObjectiveOutput", "PretrainOutput", "PretrainingModel",
           "build_objectives"]
