"""Shared fixtures: tiny configs and random batches for model and objective tests."""

from __future__ import annotations

import collections
import json
import os
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils._python_dispatch import TorchDispatchMode

import vlp
from vlp.data.batch import Batch
from vlp.data.features import RegionStoreWriter
from vlp.data.locations import location_features
from vlp.data.tokenizer import Tokenizer
from vlp.models import ModelConfig

# the real data every machine and CI have beside the project (../shared/data/README.md)
COCO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "coco"
COCO_IMAGES = COCO / "images"  # six COCO val2014 photos

VOCAB = 50
FEAT = 12
CLASSES = 5

# Tests run tiny models, which one thread computes as fast as several; on a shared machine
# torch's threads wait on each other instead (a two-thread forward of a 32-wide model took
# 60× as long as one thread's under load). VLP_TEST_THREADS=0 keeps torch's default.
_THREADS = int(os.environ.get("VLP_TEST_THREADS", "1"))
if _THREADS > 0:
    torch.set_num_threads(_THREADS)


@pytest.fixture
def tiny_cfg() -> ModelConfig:
    """A model config small enough to train in a test."""
    return ModelConfig(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64,
                       dropout=0.0, vocab_size=VOCAB, region_feature_dim=FEAT,
                       num_region_classes=CLASSES, max_positions=32)


def random_batch(b: int = 4, length: int = 7, regions: int = 5, seed: int = 0,
                 loc_dim: int = 7) -> Batch:
    """A batch with every pre-training field filled: some masked tokens and regions,
    mixed ITM labels, uneven padding; ``loc_dim``-d region locations."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (b, length), generator=g)
    text_mask = torch.ones(b, length, dtype=torch.bool)
    text_mask[0, -2:] = False
    ids[~text_mask] = 0
    labels = torch.full_like(ids, -100)
    labels[:, 1] = ids[:, 1]
    labels[:, 3] = ids[:, 3]
    ids = ids.clone()
    ids[:, 1] = 4  # [MASK]
    feats = torch.randn(b, regions, FEAT, generator=g)
    region_mask = torch.ones(b, regions, dtype=torch.bool)
    region_mask[1, -1] = False
    masked = torch.zeros(b, regions, dtype=torch.bool)
    masked[:, 0] = True
    targets = feats.clone()
    feats[masked] = 0.0
    xy = torch.rand(b, regions, 2, generator=g) * 30
    boxes = torch.cat([xy, xy + 10 + torch.rand(b, regions, 2, generator=g) * 20], dim=-1)
    loc = location_features(boxes, torch.tensor(64.0), torch.tensor(64.0), loc_dim)
    cls = torch.softmax(torch.randn(b, regions, CLASSES, generator=g) * 3, dim=-1)
    return Batch(input_ids=ids, text_mask=text_mask, mlm_labels=labels, region_feats=feats,
                 region_loc=loc, region_mask=region_mask, region_masked=masked,
                 region_targets=targets, region_cls=cls,
                 itm_labels=torch.tensor([1, 0, 1, 0][:b] + [1] * max(0, b - 4)))


def make_dataset(root: Path, n_images: int = 14, feat: int = 12, classes: int = 4,
                 val_images: int = 3) -> Path:
    """A world-like directory for training-loop tests: a Karpathy split file (the last
    ``val_images`` images are val), a region store of random regions, a vocabulary, and
    64×64 PNG images listed in a COCO-style ``captions.json`` (for pixel models)."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True, exist_ok=True)
    colours, shapes = ["red", "blue", "green", "yellow"], ["circle", "square", "star"]
    images = []
    with RegionStoreWriter(root / "features", feat, classes, dtype="float32") as store:
        for i in range(1, n_images + 1):
            n = int(rng.integers(3, 7))
            xy = rng.uniform(0, 40, (n, 2))
            boxes = np.concatenate([xy, xy + rng.uniform(5, 20, (n, 2))], 1).astype(np.float32)
            probs = rng.dirichlet(np.ones(classes), n).astype(np.float32)
            store.add(i, 64, 64, rng.normal(size=(n, feat)).astype(np.float32), boxes, probs)
            words = [f"a {rng.choice(colours)} {rng.choice(shapes)} and a {rng.choice(shapes)}"
                     for _ in range(2)]
            pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
            Image.fromarray(pixels).save(root / "images" / f"img_{i}.png")
            images.append({"filename": f"img_{i}.png", "cocoid": i, "imgid": i - 1,
                           "split": "val" if i > n_images - val_images else "train",
                           "sentences": [{"raw": w, "tokens": w.split()} for w in words]})
    ann = root / "annotations"
    ann.mkdir(parents=True, exist_ok=True)
    (ann / "dataset_world.json").write_text(json.dumps({"images": images}))
    listed = [{"id": im["cocoid"], "file_name": im["filename"], "width": 64, "height": 64}
              for im in images]
    (ann / "captions.json").write_text(json.dumps({"images": listed, "annotations": []}))
    texts = [s["raw"] for im in images for s in im["sentences"]]
    Tokenizer.train(texts, root / "vocab.txt", vocab_size=110, min_frequency=1)
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A :func:`make_dataset` shared by the tests of one module."""
    return make_dataset(tmp_path_factory.mktemp("tiny"))


def random_regions(root: Path, n_images: int, feat: int = 12, classes: int = 7) -> Path:
    """A region store under ``root / "features"`` for images 1..``n_images`` of a 64×64
    world: 3–7 random boxes each, random features and class distributions (seed 0)."""
    rng = np.random.default_rng(0)
    with RegionStoreWriter(root / "features", feat, classes, dtype="float32") as store:
        for image_id in range(1, n_images + 1):
            n = int(rng.integers(3, 8))
            xy = rng.uniform(0, 40, (n, 2))
            boxes = np.concatenate([xy, xy + rng.uniform(5, 20, (n, 2))], 1)
            store.add(image_id, 64, 64, rng.normal(size=(n, feat)).astype(np.float32),
                      boxes.astype(np.float32),
                      rng.dirichlet(np.ones(classes), n).astype(np.float32))
    return root / "features"


def nan_regions(collate: Callable[..., Batch]) -> Callable[..., Batch]:
    """``collate`` with every region feature of its batches set to NaN."""

    def poisoned(*args: object) -> Batch:
        batch = collate(*args)
        batch.region_feats[:] = float("nan")
        return batch

    return poisoned


def overfit_losses(module: torch.nn.Module, batch: Batch, names: list[str], steps: int,
                   lr: float) -> list[float]:
    """Train ``module`` (a ``LossModel``) on one fixed ``batch`` for ``steps`` AdamW
    steps of the objectives ``names``; the loss after each step."""
    opt = torch.optim.AdamW(module.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        out = module(batch, names)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(float(out.loss.detach()))
    return losses


def perturb(model: torch.nn.Module, scale: Callable[[str], float], seed: int = 1) -> None:
    """Add ``scale(name)`` × N(0, 1) noise to each parameter, so that LayerNorms leave
    (1, 0), biases and zero-initialised tables leave 0 and any mix-up in a mapping shows."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(scale(name) * torch.randn_like(p))


def save_reference(model: torch.nn.Module, scale: Callable[[str], float], out: Path) -> Path:
    """``model`` (an HF model built under a fixed seed) perturbed by ``scale`` and saved
    with ``save_pretrained`` to ``out``, as a checkpoint directory to import."""
    perturb(model.eval(), scale)
    model.save_pretrained(out)  # type: ignore[operator]
    return out


# operations that make the host wait for an accelerator (tests/train/test_host_sync.py)
WAITS = {"_local_scalar_dense", "nonzero", "masked_select", "masked_scatter", "unique",
         "_unique2", "unique_consecutive", "repeat_interleave", "bincount", "equal"}
# Tensor methods that read a tensor on the host without an operation to see
READS = ("tolist", "numpy", "cpu", "item")
# reads of the host's own: the finite-loss check's host copy of the losses, made as the
# device got to them and read one micro-step later (vlp.train.trainer.FiniteLossCheck),
# and the batch's masks counted while they are still on the CPU (Batch.host_counts)
ALLOWED = {("train/trainer.py", "_check"), ("data/batch.py", "host_counts")}
PACKAGE = str(Path(vlp.__file__).resolve().parent) + "/"


class HostReads(TorchDispatchMode):
    """Records (what, where in vlp) of every operation or read that, on an accelerator,
    waits for the device: a value read as a number or list, a copy to the host, a shape
    that depends on the values (``nonzero``, a boolean index)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: collections.Counter[tuple[str, str]] = collections.Counter()
        self.callers: set[str] = set()  # every vlp file on the stack of a recorded read
        self._saved: dict[str, Any] = {}

    def _record(self, name: str) -> None:
        ours = [f for f in traceback.extract_stack() if f.filename.startswith(PACKAGE)]
        if not ours:
            return
        where = (ours[-1].filename.removeprefix(PACKAGE), ours[-1].name)
        if where not in ALLOWED:
            self.seen[(name, f"{where[0]}:{ours[-1].lineno}")] += 1
            self.callers.update(f.filename.removeprefix(PACKAGE) for f in ours)

    def __enter__(self) -> HostReads:
        for name in READS:
            method = getattr(torch.Tensor, name)
            self._saved[name] = method

            def read(t: torch.Tensor, *args: Any, _name: str = name, _m: Any = method,
                     **kwargs: Any) -> Any:
                self._record(_name)
                return _m(t, *args, **kwargs)

            setattr(torch.Tensor, name, read)
        super().__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        super().__exit__(*exc)
        for name, method in self._saved.items():
            setattr(torch.Tensor, name, method)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        name = func._schema.name.split("::")[-1]
        indices = args[1] if name.startswith("index") and len(args) > 1 else ()
        by_mask = isinstance(indices, (list, tuple)) and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices)
        if name in WAITS or by_mask:
            self._record(name)
        return func(*args, **(kwargs or {}))


def tiny_pretraining(world: Path, out: Path, *extra: str) -> Any:
    """A pre-training run (:class:`vlp.train.trainer.Trainer`) of a 32-wide, 2-layer model
    on ``world``, every objective of the batch in one pass (``mix: sum``); ``extra``
    overrides come last."""
    from vlp.config import load_config
    from vlp.train.config import PretrainConfig
    from vlp.train.pretrain import build_pretraining

    return build_pretraining(load_config(PretrainConfig, None, [
        f"data.world={world}", "data.token_budget=60", "data.bucket_size=8",
        "model.hidden_size=32", "model.num_layers=2", "model.num_heads=2",
        "model.intermediate_size=64", "model.dropout=0.1", f"train.out={out}",
        "train.steps=3", "train.precision=fp32", "train.tensorboard=false",
        "train.progress=false", "objectives.mix=sum", *extra]))
