"""Precision follows the hardware: bf16 where it is computed natively, fp32 where a CPU
would emulate it (about 100x slower), with one warning line."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from vlp.train import cli, runtime


@pytest.mark.parametrize(("avx512_bf16", "amx", "expected"),
                         [(False, False, "fp32"), (True, False, "bf16"), (False, True, "bf16")])
def test_bf16_only_where_the_cpu_computes_it(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str],
                                             avx512_bf16: bool, amx: bool,
                                             expected: str) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert runtime.effective_precision(torch.device("cpu"), "bf16") == expected
    err = capsys.readouterr().err
    assert ("warning: train.precision: bf16" in err) == (expected == "fp32")
    assert runtime.effective_precision(torch.device("cpu"), "fp32") == "fp32"
    assert runtime.effective_precision(torch.device("cuda"), "bf16") == "bf16"


def test_adamw_is_fused_and_steps_as_the_loop_does() -> None:
    """make_optimizer: no decay on biases and norms, and torch's fused kernel (one pass
    per tensor) giving the per-parameter loop's update within fp32 rounding."""
    def model() -> torch.nn.Module:
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16),
                                   torch.nn.Linear(16, 4))

    fused_model, loop_model = model(), model()
    fused = runtime.make_optimizer(fused_model, 1e-2, 0.1, [0.9, 0.98])
    assert fused.defaults["fused"] is True
    assert [len(g["params"]) for g in fused.param_groups] == [2, 4]  # weights; biases, norm
    loop = torch.optim.AdamW([{"params": g["params"], "weight_decay": g["weight_decay"]}
                              for g in (
                                  {"params": [loop_model[0].weight, loop_model[2].weight],
                                   "weight_decay": 0.1},
                                  {"params": [loop_model[0].bias, loop_model[1].weight,
                                              loop_model[1].bias, loop_model[2].bias],
                                   "weight_decay": 0.0})],
                             lr=1e-2, betas=(0.9, 0.98), eps=1e-6, foreach=False)
    x = torch.randn(32, 8, generator=torch.Generator().manual_seed(1))
    for m, opt in ((fused_model, fused), (loop_model, loop)):
        for _ in range(5):
            m(x).square().mean().backward()
            opt.step()
            opt.zero_grad()
    for a, b in zip(fused_model.parameters(), loop_model.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), (a - b).abs().max()
    moved = max((a - b).abs().max() for a, b in zip(fused_model.parameters(),
                                                   model().parameters(), strict=True))
    assert moved > 1e-3  # the steps did move the weights


# mmapped bytes before and after a 64 MB buffer is freed and another taken (glibc's
# mallinfo2: its fifth field, hblkhd, counts the bytes held in mmapped blocks)
_ALLOCATOR_PROBE = """
import ctypes, sys
from vlp.train.allocator import keep_freed_memory
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena ordblks smblks hblks hblkhd usmblks "
                                               "fsmblks uordblks fordblks keepcost").split()]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
block = libc.malloc(64 << 20)
mapped = libc.mallinfo2().hblkhd
libc.free(block)
again = libc.malloc(64 << 20)
print(applied, mapped >= 64 << 20, libc.mallinfo2().arena >= 64 << 20)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
@pytest.mark.parametrize(("arm", "expected"), [("default", "False True False"),
                                               ("keep", "True False True")])
def test_freed_memory_is_kept_in_the_heap(arm: str, expected: str) -> None:
    """glibc maps a 64 MB block afresh (and unmaps it on free); after keep_freed_memory()
    it comes from the heap, where a freed block is there for the next step."""
    done = subprocess.run([sys.executable, "-c", _ALLOCATOR_PROBE, arm], capture_output=True,
                          text=True, check=True)
    assert done.stdout.split() == expected.split()


def test_the_command_line_keeps_freed_memory(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[bool] = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append(True) or True)
    assert cli.main(["config", "new", "uniter"]) == 0
    assert calls == [True] and "model:" in capsys.readouterr().out
