"""Loading part of a model's weights (text initialisation, imported checkpoints)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vlp.errors import VlpError


def load_partial(module: nn.Module, state: dict[str, Tensor], source: str) -> list[str]:
    """Copy ``state`` into the matching parameters of ``module``; the rest stay as they are.

    Every key of ``state`` must name a parameter or buffer of ``module`` with the same
    shape, so a mismatched checkpoint fails loudly instead of half-loading.

    Args:
        module: the model to fill.
        state: name → tensor, in ``module``'s names.
        source: where the weights came from, for error messages.

    Returns:
        The names of ``module``'s entries that ``state`` did not cover.

    Raises:
        VlpError: a key the module lacks, or a shape that differs.
    """
    own = module.state_dict()
    for key, value in state.items():
        if key not in own:
            raise VlpError(f"{source}: weight '{key}' has no place in this model "
                           f"({type(module).__name__})")
        if own[key].shape != value.shape:
            raise VlpError(f"{source}: weight '{key}' has shape {tuple(value.shape)}, "
                           f"the model expects {tuple(own[key].shape)}")
    with torch.no_grad():
        for key, value in state.items():
            own[key].copy_(value.to(own[key].dtype))
    return sorted(k for k in own if k not in state)
