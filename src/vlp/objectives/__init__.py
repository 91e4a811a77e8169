"""Objective registry: name → builder(model config, encoder). Filled by explicit imports.

A new objective is one module (an :class:`Objective` subclass and its builder) plus a
:func:`register_objective` call; the built-in ones are registered below."""

from __future__ import annotations

from collections.abc import Callable

from vlp.errors import VlpError
from vlp.models.config import ModelConfig
from vlp.models.encoder import VLEncoder
from vlp.objectives.base import Objective, ObjectiveOutput
from vlp.objectives.itc import build_itc
from vlp.objectives.itm import build_itm
from vlp.objectives.loss_model import LossModel, LossOutput
from vlp.objectives.mlm import build_mlm
from vlp.objectives.mrm import build_mrc, build_mrc_kl, build_mrfr
from vlp.objectives.mvm import build_mvm
from vlp.objectives.wra import build_wra

Builder = Callable[[ModelConfig, VLEncoder], Objective]

OBJECTIVES: dict[str, Builder] = {
    "mlm": build_mlm,
    "mrfr": build_mrfr,
    "mrc": build_mrc,
    "mrc_kl": build_mrc_kl,
    "itm": build_itm,
    "itc": build_itc,
    "wra": build_wra,
    "mvm": build_mvm,
}


def register_objective(name: str, build: Builder) -> Builder:
    """Make ``build`` the objective called ``name`` in configs (``objectives.weights``).

    Raises:
        VlpError: ``name`` is taken.
    """
    if name in OBJECTIVES:
        raise VlpError(f"objective '{name}' is registered already")
    OBJECTIVES[name] = build
    return build


def build_objectives(names: list[str], cfg: ModelConfig, model: VLEncoder,
                     settings: object = None) -> dict[str, Objective]:
    """Build the named objectives for ``model``, each configured from ``settings`` (the
    run's objectives config) when given."""
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown:
        raise VlpError(f"objectives: unknown objective '{unknown[0]}' "
                       f"(known: {', '.join(sorted(OBJECTIVES))})")
    objectives = {name: OBJECTIVES[name](cfg, model) for name in names}
    if settings is not None:
        for objective in objectives.values():
            objective.configure(settings)
    return objectives


__all__ = ["OBJECTIVES", "LossModel", "LossOutput", "Objective", "ObjectiveOutput",
           "build_objectives", "register_objective"]
