"""Multi-head attention: masking by hand, and the plain-ops path short bf16 CPU attention takes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vlp.layers import attention
from vlp.layers.attention import MultiHeadAttention


def _by_hand(attn: MultiHeadAttention, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    b, n, d = x.shape
    h = attn.num_heads
    q, k, v = (t.view(b, n, h, d // h).transpose(1, 2) for t in attn.qkv(x).chunk(3, -1))
    scores = q @ k.transpose(-1, -2) / math.sqrt(d // h)
    scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    y = scores.softmax(-1) @ v
    return attn.out(y.transpose(1, 2).reshape(b, n, d))


@pytest.mark.parametrize("keys", [6, attention._CPU_BF16_EAGER_MAX_KEYS + 8])
def test_bf16_attention_matches_fp32_by_hand_and_ignores_padding(keys: int) -> None:
    """Both sides of the short-sequence switch: same result as the formula, padding unread."""
    torch.manual_seed(0)
    attn = MultiHeadAttention(32, 4).eval()
    x = torch.randn(2, keys, 32)
    mask = torch.ones(2, keys, dtype=torch.bool)
    mask[1, keys // 2:] = False
    want = _by_hand(attn, x, mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = attn(x, mask)
        changed = x.clone()
        changed[1, keys // 2:] = 100.0  # padded keys (and their queries) only
        got_changed = attn(changed, mask)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want, atol=0.05, rtol=0.05)
    torch.testing.assert_close(got_changed[:, : keys // 2], got[:, : keys // 2])


def test_eager_attention_is_sdpa_including_a_query_with_no_keys() -> None:
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 4, 8), torch.randn(2, 3, 6, 8), torch.randn(2, 3, 6, 8)
    mask = torch.ones(2, 1, 1, 6, dtype=torch.bool)
    mask[0, ..., 4:] = False
    mask[1] = False  # every key padded: SDPA returns zeros
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(attention.eager_attention(q, k, v, mask), want)
    assert attention.eager_attention(q, k, v, mask)[1].abs().max() == 0
    torch.testing.assert_close(attention.eager_attention(q, k, v, None),
                               F.scaled_dot_product_attention(q, k, v))
    grads = []
    for fn in (attention.eager_attention, F.scaled_dot_product_attention):
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        out = fn(*leaves, mask) if fn is attention.eager_attention else fn(*leaves, attn_mask=mask)
        (out * torch.arange(out.numel()).view_as(out).sin()).sum().backward()
        grads.append([t.grad for t in leaves])
    for ours, theirs in zip(*grads, strict=True):
        torch.testing.assert_close(ours, theirs)


def test_short_bf16_cpu_attention_takes_the_eager_path(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = attention.eager_attention

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(args[0].dtype)
        return real(*args, **kwargs)

    monkeypatch.setattr(attention, "eager_attention", spy)
    attn = MultiHeadAttention(16, 2).eval()
    x, mask = torch.randn(1, 5, 16), torch.ones(1, 5, dtype=torch.bool)
    attn(x, mask)  # fp32: SDPA
    assert calls == []
    with torch.autocast("cpu", dtype=torch.bfloat16):
        attn(x, mask)
    assert calls == [torch.bfloat16]
