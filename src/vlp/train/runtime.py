"""Devices, mixed precision, optimizer and schedule, torch.distributed set-up."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import sys
from collections.abc import Iterator
from typing import Literal

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from vlp.errors import VlpError


def resolve_device(name: str) -> torch.device:
    """``auto`` → this rank's CUDA device if there is one, else CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise VlpError(f"train.device: '{name}' asked for, but no CUDA device is available")
    return device


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[None]:
    """Autocast context for ``precision`` (fp32: none; bf16 on CPU or CUDA; fp16 on CUDA)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise VlpError("train.precision: fp16 needs a CUDA device; use bf16 on CPU")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 in hardware. CUDA does; a CPU needs AVX512-BF16
    or AMX — without them torch emulates bf16 matrix products, about 100× slower than
    fp32 (measured on an AVX2-only EPYC: 2.35 s vs 17 ms for a 1024² product)."""
    if device.type != "cpu":
        return True
    probes = [getattr(torch.cpu, name, None) for name in
              ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(p is None for p in probes):
        return True  # a torch that cannot tell: assume the fast path
    return any(p is not None and p() for p in probes)


Precision = Literal["fp32", "bf16", "fp16"]


def cpu_model() -> str:
    """The CPU's ``model name`` from /proc/cpuinfo (the platform's name elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def code_version() -> str:
    """vlp's version, with the git commit of its source tree when it runs from a checkout
    (``+dirty`` when files differ from it): results made while the code changed say so."""
    import subprocess

    import vlp

    root = os.path.dirname(os.path.dirname(os.path.abspath(vlp.__file__)))
    if "site-packages" in root.split(os.sep):  # installed: not the checkout around it
        return vlp.__version__
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, timeout=10, check=True)
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--", "."],
                               capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return vlp.__version__
    return f"{vlp.__version__}+g{head.stdout.strip()}" + ("+dirty" if dirty.stdout.strip()
                                                          else "")


def machine() -> dict[str, str]:
    """What a result was computed on, for a record beside it: the same config trains in
    bf16 on one CPU and in fp32 on another (:func:`effective_precision`). Creates no CUDA
    context (a process that only records keeps the GPU's memory free)."""
    return {"cpu": cpu_model(), "torch": torch.__version__,
            "cpu_bf16": "native" if native_bf16(torch.device("cpu")) else
            "emulated (a CPU run set to bf16 trains in fp32)",
            "cuda_devices": str(torch.cuda.device_count())}


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity, which containers and
    ``taskset`` narrow; ``os.cpu_count()`` counts the whole machine)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def effective_precision(device: torch.device, precision: Precision) -> Precision:
    """``precision``, or fp32 where bf16 would be emulated (see :func:`native_bf16`);
    a change is printed as one ``warning:`` line."""
    if precision == "bf16" and not native_bf16(device):
        print("warning: train.precision: bf16 on a CPU without AVX512-BF16 or AMX is "
              "emulated, about 100x slower than fp32; training in fp32 instead",
              file=sys.stderr)
        return "fp32"
    return precision


def make_optimizer(model: nn.Module, lr: float, weight_decay: float,
                   betas: list[float]) -> torch.optim.AdamW:
    """AdamW; biases, LayerNorm and embedding-norm weights get no weight decay.

    The fused kernel where torch has one for the parameters' device (CPU, CUDA): the same
    update within fp32 rounding, one pass over each tensor instead of a loop of ops per
    parameter (on CPU torch's default is that loop: 1.13 s vs 0.15 s a step for 165 M
    parameters, one thread).
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()
    for name, param in model.named_parameters():
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        (no_decay if param.ndim < 2 or "norm" in name else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    params = [*decay, *no_decay]
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point()
                                 for p in params)
    return torch.optim.AdamW(groups, lr=lr, betas=(betas[0], betas[1]), eps=1e-6,
                             fused=fused or None)


def warmup_linear(optimizer: torch.optim.Optimizer, warmup: int,
                  total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to the peak rate over ``warmup`` steps, then linear decay to 0."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def compile_layers(model: nn.Module) -> int:
    """Compile, in place, every transformer layer of ``model`` (self-, cross- and
    co-attention layers: almost all of its FLOPs) with ``torch.compile`` and dynamic shapes;
    returns how many. Packing (:mod:`vlp.layers.packing`) stays outside the compiled code,
    so the number of real positions may change from batch to batch without a recompile."""
    from vlp.layers.coattention import CrossAttentionLayer
    from vlp.layers.transformer import TransformerLayer

    layers = [m for m in model.modules() if isinstance(m, (TransformerLayer, CrossAttentionLayer))]
    for layer in layers:
        layer.compile(dynamic=True)
    return len(layers)


def is_main_process() -> bool:
    """Rank 0 of a torchrun launch, or a plain process: the one that prints results."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def distributed_init() -> tuple[int, int]:
    """Join the process group that ``torchrun`` describes; (rank, world size)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


@contextlib.contextmanager
def maybe_no_sync(model: nn.Module, skip_sync: bool) -> Iterator[None]:
    """Skip DDP's gradient all-reduce on accumulation micro-steps."""
    if skip_sync and isinstance(model, DistributedDataParallel):
        with model.no_sync():
            yield
    else:
        yield



@dataclasses.dataclass(frozen=True)
class Env:
    """Where a run executes: its rank among ``world_size`` processes, its device, and the
    precision that runs there (bf16 falls back to fp32 on CPUs without bf16 units)."""

    rank: int
    world_size: int
    device: torch.device
    precision: Precision


def make_env(device: str, precision: Precision) -> Env:
    """Join torchrun's process group (if any) and resolve ``train.device`` and
    ``train.precision`` for this process."""
    resolved = resolve_device(device)
    if resolved.type == "cuda":
        # this rank's GPU is the current one: NCCL's collectives, CUDA events and the
        # loader's pinned memory use the current device, else every rank's lands on GPU 0
        torch.cuda.set_device(resolved)
    rank, world_size = distributed_init()
    return Env(rank, world_size, resolved, effective_precision(resolved, precision))
