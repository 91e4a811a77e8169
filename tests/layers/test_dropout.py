"""vlp's CPU dropout: F.dropout's contract with a mask drawn four elements a draw."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vlp.layers.dropout import Dropout, dropout


@pytest.mark.parametrize("p", [0.1, 0.25, 0.5, 0.9])
def test_the_rate_and_the_expectation_are_kept(p: float) -> None:
    torch.manual_seed(0)
    n = 1_000_000
    y = dropout(torch.ones(n), p)
    kept = float((y != 0).float().mean())
    # a binomial share of a million draws: 5 standard deviations
    assert abs(kept - (1 - p)) < 5 * math.sqrt(p * (1 - p) / n)
    scale = float(y.max())
    assert abs(scale - 1 / (1 - p)) < 1e-4 / (1 - p)  # the rate really used: k / 65536
    assert set(y.unique().tolist()) == {0.0, scale}
    assert abs(float(y.mean()) - 1.0) < 5 * math.sqrt(p / (1 - p) / n)


def test_neighbouring_elements_are_independent() -> None:
    """Four elements share a 64-bit draw: their masks must not be correlated."""
    torch.manual_seed(1)
    m = (dropout(torch.ones(2_000_000), 0.5) != 0).float()
    for lag in (1, 2, 3, 4, 5, 8):
        corr = float(torch.corrcoef(torch.stack([m[:-lag], m[lag:]]))[0, 1])
        assert abs(corr) < 5 / math.sqrt(len(m)), (lag, corr)
    # each lane of the draw alone keeps half
    lanes = m[: len(m) // 4 * 4].view(-1, 4).mean(0)
    assert torch.allclose(lanes, torch.full((4,), 0.5), atol=0.005)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_gradient_is_the_mask_times_the_scale(dtype: torch.dtype) -> None:
    torch.manual_seed(2)
    x = torch.randn(7, 33, 5, dtype=dtype, requires_grad=True)  # 1155: a partial last draw
    y = dropout(x, 0.3)
    assert y.dtype == dtype and y.shape == x.shape
    g = torch.randn_like(y)
    y.backward(g)
    keep = y != 0
    scale = 65536 / (65536 - round(0.3 * 65536))
    assert x.grad is not None
    torch.testing.assert_close(x.grad, torch.where(keep, g, 0) * scale)
    # each output rounded once from the fp32 product (CPU F.dropout's scale rounded to
    # bf16 first shrinks every kept element by 0.16 %)
    expected = (torch.where(keep, x.detach(), 0).float() * scale).to(dtype)
    assert torch.equal(y, expected)


def test_seeded_masks_repeat_and_differ_from_call_to_call() -> None:
    x = torch.ones(4096)
    torch.manual_seed(3)
    a, b = dropout(x, 0.5), dropout(x, 0.5)
    torch.manual_seed(3)
    assert torch.equal(dropout(x, 0.5), a)
    assert not torch.equal(a, b)


def test_eval_zero_and_one_and_bad_rates() -> None:
    x = torch.randn(100)
    assert dropout(x, 0.5, training=False) is x
    assert dropout(x, 0.0) is x
    assert torch.equal(dropout(x, 1.0), torch.zeros(100))
    with pytest.raises(ValueError, match="between 0 and 1"):
        dropout(x, 1.5)


def test_the_module_is_an_nn_dropout_that_obeys_train_and_eval() -> None:
    layer = Dropout(0.2)
    assert isinstance(layer, nn.Dropout) and repr(layer) == repr(nn.Dropout(0.2))
    x = torch.ones(10_000)
    assert (layer(x) == 0).any()
    layer.eval()
    assert torch.equal(layer(x), x)


def test_rates_finer_than_the_mask_and_compiled_code_use_torchs_dropout(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A rate the 16-bit mask cannot hold, and code inside torch.compile (whose masks are
    its own), go to F.dropout: nothing is silently left undropped."""
    calls: list[float] = []

    def spy(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
        calls.append(p)
        return x

    monkeypatch.setattr(F, "dropout", spy)
    dropout(torch.ones(8), 1e-6)  # rounds to 0 of 65536 levels
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    dropout(torch.ones(8), 0.1)
    assert calls == [1e-6, 0.1]


def test_the_module_compiles_whole() -> None:
    compiled = torch.compile(Dropout(0.5), backend="aot_eager", fullgraph=True)
    torch.manual_seed(4)
    y = compiled(torch.ones(10_000))
    assert set(y.unique().tolist()) == {0.0, 2.0}
    assert 0.45 < float((y != 0).float().mean()) < 0.55
