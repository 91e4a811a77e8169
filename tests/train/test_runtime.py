"""Precision follows the hardware: bf16 where it is computed natively, fp32 where a CPU
would emulate it (about 100x slower), with one warning line."""

from __future__ import annotations

import pytest
import torch

from vlp.train import runtime


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
