"""Visual dictionary: nearest-entry assignment, straight-through output, moving average."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from vlp.layers.visual_dictionary import VisualDictionary


def test_assignment_is_the_brute_force_nearest_entry() -> None:
    g = torch.Generator().manual_seed(0)
    vd = VisualDictionary(37, 8)
    vd.entries.copy_(torch.randn(37, 8, generator=g))
    features = torch.randn(5, 11, 8, generator=g) * 1.5
    distances = ((features[..., None, :] - vd.entries) ** 2).sum(-1)  # (5, 11, 37)
    assert torch.equal(vd.assign(features), distances.argmin(-1))
    assert vd.assign(features).shape == (5, 11)


def test_ties_go_to_the_lowest_index() -> None:
    vd = VisualDictionary(4, 2)
    vd.entries.copy_(torch.tensor([[5.0, 5.0], [1.0, 0.0], [-3.0, 0.0], [1.0, 0.0]]))
    # (1, 0) is entries 1 and 3; (-1, 0) is 2 away from entry 1 and 3 and 2 from entry 2
    features = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert vd.assign(features).tolist() == [1, 1]


def test_output_is_the_entry_with_a_straight_through_gradient() -> None:
    g = torch.Generator().manual_seed(1)
    vd = VisualDictionary(6, 4).eval()
    vd.entries.copy_(torch.randn(6, 4, generator=g))
    features = torch.randn(3, 5, 4, generator=g, requires_grad=True)
    out, indices = vd(features)
    # v + (d − v) is d up to rounding
    torch.testing.assert_close(out.detach(), vd.entries[indices], rtol=0, atol=1e-6)
    weight = torch.randn(3, 5, 4, generator=g)
    (out * weight).sum().backward()
    assert features.grad is not None
    torch.testing.assert_close(features.grad, weight)  # identity backward


def test_moving_average_by_hand() -> None:
    """γ = 0.5; entry 0 gets (1, 0) and (0, 1), entry 1 gets (9, 0), entry 2 nothing; the
    feature (0, 3) is padding and must not count."""
    vd = VisualDictionary(3, 2, momentum=0.5, init_from_data=False)
    vd.entries.copy_(torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]))
    features = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [9.0, 0.0], [0.0, 3.0]]])
    valid = torch.tensor([[True, True, True, False]])
    _, indices = vd.train()(features, valid)
    assert indices.tolist() == [[0, 0, 1, 0]]
    expected = torch.tensor([[0.25, 0.25], [9.5, 0.0], [0.0, 10.0]])
    torch.testing.assert_close(vd.entries, expected)


def test_no_update_in_eval_mode() -> None:
    vd = VisualDictionary(5, 3).eval()
    before = vd.entries.clone()
    vd(torch.randn(4, 3))
    assert torch.equal(vd.entries, before)
    vd.train()(torch.randn(4, 3))
    assert not torch.equal(vd.entries, before)


def test_update_sums_and_counts_across_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under DDP the per-entry sums and counts are all-reduced before the means: here a
    second rank adds the feature (0, 4) to entry 0."""
    other = {2: torch.tensor([[0.0, 4.0], [0.0, 0.0]]), 1: torch.tensor([1.0, 0.0])}

    def all_reduce(t: torch.Tensor) -> None:
        t.add_(other[t.ndim])

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(dist, "all_reduce", all_reduce)
    vd = VisualDictionary(2, 2, momentum=0.5, init_from_data=False)
    vd.entries.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0]]))
    vd.train()(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    torch.testing.assert_close(vd.entries[0], 0.5 * torch.tensor([1.0, 5.0]) / 3)
    torch.testing.assert_close(vd.entries[1], torch.tensor([10.0, 10.0]))


def test_first_training_batch_draws_the_entries_from_its_real_features() -> None:
    features = torch.arange(24.0).reshape(2, 6, 2)
    valid = torch.ones(2, 6, dtype=torch.bool)
    valid[1, 3:] = False  # padding: never an entry
    vd = VisualDictionary(4, 2, momentum=0.9).eval()
    seeded = vd.entries.clone()
    vd(features, valid)
    assert torch.equal(vd.entries, seeded) and not bool(vd.initialised)  # eval: as built
    vd.train()(features, valid)
    real = features[valid]  # (9, 2)
    assert bool(vd.initialised)
    # drawn from the real features (each then moved towards its own mean, itself a mean
    # of real features: with γ = 0.9 an entry stays within the real features' hull)
    drawn = VisualDictionary(4, 2)
    drawn.init_from(features, valid)
    assert all(any(torch.equal(e, f) for f in real) for e in drawn.entries)
    assert len({tuple(e.tolist()) for e in drawn.entries}) == 4  # 9 features: no repeats
    again = drawn.entries.clone()
    drawn.train()(features * 100, valid)  # initialised: updated, not drawn again
    assert not any(torch.equal(e, f) for e in drawn.entries for f in real * 100)
    assert not torch.equal(drawn.entries, again)
    few = VisualDictionary(8, 2)
    few.init_from(features[:1, :2])  # 2 features for 8 entries: drawn with replacement
    assert {tuple(e.tolist()) for e in few.entries} <= {(0.0, 1.0), (2.0, 3.0)}
    assert "initialised" in few.state_dict()


def test_entries_are_seeded_buffers() -> None:
    torch.manual_seed(0)
    a = VisualDictionary(16, 8)
    torch.manual_seed(1)
    b = VisualDictionary(16, 8)
    assert torch.equal(a.entries, b.entries)
    assert not torch.equal(a.entries, VisualDictionary(16, 8, seed=1).entries)
    assert list(a.parameters()) == []
    assert "entries" in a.state_dict()


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="momentum"):
        VisualDictionary(4, 2, momentum=1.0)


def test_assignment_is_exact_under_bf16_autocast() -> None:
    """Features close together (a common mean, small spread), as a CNN gives them: under
    autocast the distances are still taken in fp32."""
    g = torch.Generator().manual_seed(0)
    vd = VisualDictionary(256, 64, init_from_data=False)
    vd.entries.copy_(1.0 + 0.01 * torch.randn(256, 64, generator=g))
    features = 1.0 + 0.01 * torch.randn(500, 64, generator=g)
    want = ((features[:, None, :] - vd.entries) ** 2).sum(-1).argmin(-1)  # brute force
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = vd.assign(features)
    assert torch.equal(got, want)
