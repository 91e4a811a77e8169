"""vlp is extended from outside: a new objective is one module and its registration, with
nothing in vlp edited. The module is written into a temporary package, imported, and
pre-trained with through the public entry point."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from vlp.config import load_config
from vlp.objectives import OBJECTIVES
from vlp.train.config import PretrainConfig
from vlp.train.pretrain import build_pretraining

TOY_OBJECTIVE = '''
"""A toy objective: the pooled pair, projected to one number, should read 1."""

from torch import nn

from vlp.data.batch import Batch
from vlp.models.config import ModelConfig
from vlp.models.encoder import VLEncoder
from vlp.models.outputs import VLOutput
from vlp.objectives import register_objective
from vlp.objectives.base import Objective, ObjectiveOutput


class PooledToOne(Objective[VLOutput]):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, 1)
        self.prepared = 0

    def prepare(self, batch: Batch, model: object, seed: int) -> Batch:
        self.prepared += 1  # the loop calls the hook before each training step
        return batch

    def forward(self, output: VLOutput, batch: Batch) -> ObjectiveOutput:
        loss = (self.proj(output.pooled).squeeze(-1) - 1.0).pow(2).mean()
        return ObjectiveOutput(loss)


def build(cfg: ModelConfig, model: VLEncoder) -> PooledToOne:
    return PooledToOne(cfg.hidden_size)


register_objective("toy_pooled", build)
'''


@pytest.fixture
def toy_package(tmp_path: Path) -> Iterator[str]:
    """A package ``toy_ext_<n>`` on sys.path holding the toy modules; unregistered after."""
    package = tmp_path / "toy_ext"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "objective.py").write_text(TOY_OBJECTIVE)
    sys.path.insert(0, str(tmp_path))
    try:
        yield "toy_ext"
    finally:
        sys.path.remove(str(tmp_path))
        OBJECTIVES.pop("toy_pooled", None)
        for name in [m for m in sys.modules if m.startswith("toy_ext")]:
            del sys.modules[name]


def test_a_toy_objective_trains_from_its_own_module(toy_package: str, dataset: Path,
                                                    tmp_path: Path) -> None:
    module = importlib.import_module(f"{toy_package}.objective")
    assert "toy_pooled" in OBJECTIVES
    out = tmp_path / "run"
    cfg = load_config(PretrainConfig, None, [
        f"data.world={dataset}", "data.token_budget=60", "data.bucket_size=8",
        "model.hidden_size=32", "model.num_layers=2", "model.num_heads=2",
        "model.intermediate_size=64", "objectives.weights={mlm: 1.0, toy_pooled: 1.0}",
        "objectives.mix=sum", f"train.out={out}", "train.steps=4", "train.warmup_steps=1",
        "train.precision=fp32", "train.log_every=1", "train.save_every=0",
        "train.tensorboard=false", "train.progress=false", "train.lr=1e-3"])
    trainer = build_pretraining(cfg)
    metrics = trainer.run()
    assert {"eval/loss/toy_pooled", "eval/loss/mlm"} <= set(metrics)
    toy = trainer.model.objective("toy_pooled")
    assert isinstance(toy, module.PooledToOne) and toy.prepared == 4
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    logged = [r["loss/toy_pooled"] for r in rows if "loss/toy_pooled" in r]
    assert len(logged) == 4 and all(v >= 0 for v in logged)


def test_a_name_taken_is_refused(toy_package: str) -> None:
    from vlp.errors import VlpError
    from vlp.objectives import register_objective

    importlib.import_module(f"{toy_package}.objective")
    with pytest.raises(VlpError, match="objective 'toy_pooled' is registered already"):
        register_objective("toy_pooled", OBJECTIVES["mlm"])
