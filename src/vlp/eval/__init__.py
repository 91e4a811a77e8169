"""Downstream metrics: VQA accuracy, retrieval recall, box IoU and classification scores.

Each metric follows the published evaluation script of its benchmark where there is one
(VQA v2, NLVR2), so numbers here can be compared with numbers in papers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def as_numpy(x: Any) -> np.ndarray:
    """A metric's input as a numpy array: a tensor from any device or dtype (numpy has no
    bf16: those come as float32), or anything ``np.asarray`` takes."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu")
        return (x.float() if x.dtype == torch.bfloat16 else x).numpy()
    return np.asarray(x)


__all__ = ["as_numpy"]
