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
