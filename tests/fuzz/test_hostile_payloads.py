"""No code runs from a data file: a hostile payload planted in every format vlp reads that
could carry one (pickles, YAML tags, torch files, npy object arrays) is refused with one
line, and the command it carries never runs.

Each payload, if executed, would create a marker file; every test asserts the marker is
absent afterwards. JSON, JSONL, TSV, vocab.txt and safetensors hold no code by design
(they are parsed as data only) and are fuzzed for one-line errors in the other files here.
"""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from fuzz_harness import TINY_RUN, refuse, tiny_run

from vlp.errors import VlpError
from vlp.train.checkpoint import HISTORY


class Payload:
    """Pickles to a call of ``os.system`` that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def hostile_pickle(marker: Path, protocol: int = 2) -> bytes:
    return pickle.dumps({"info": Payload(marker)}, protocol=protocol)




@pytest.fixture(scope="module")
def run(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_run(dataset, tmp_path_factory.mktemp("run") / "run")


def test_yaml_config_with_a_python_tag(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    marker = tmp_path / "ran"
    config = tmp_path / "evil.yaml"
    config.write_text(f'train: !!python/object/apply:os.system ["touch {marker}"]\n')
    refuse(capsys, ["pretrain", "--config", str(config), f"train.out={tmp_path / 'o'}"],
           watch=[config], absent=[marker, tmp_path / "o"], mentions=[str(config)])


@pytest.mark.parametrize("tag", ["!!python/object/apply:os.system", "!!python/name:os.system"])
def test_run_config_with_a_python_tag(run: Path, tmp_path: Path, tag: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    marker = tmp_path / "ran"
    (copy / "config.yaml").write_text(f'data: {tag} ["touch {marker}"]\n')
    refuse(capsys, ["evaluate", "retrieval", "--checkpoint", str(copy)],
           absent=[marker], mentions=["config.yaml"])


@pytest.mark.parametrize("protocol", [2, 4])
def test_trainer_state_pickle(run: Path, tmp_path: Path, dataset: Path, protocol: int,
                              capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    marker = tmp_path / "ran"
    ckpt = copy / "checkpoints" / "step_00000002"
    torch.save({"step": Payload(marker)}, ckpt / "state.pt", pickle_protocol=protocol)
    (copy / "checkpoints" / HISTORY).unlink()  # so that sizes cannot give it away first
    refuse(capsys, ["pretrain", "--resume", f"data.world={dataset}", *TINY_RUN, "train.steps=3",
                    f"train.out={copy}"],
           absent=[marker], mentions=["state.pt"])


def test_trainer_state_raw_pickle(run: Path, tmp_path: Path, dataset: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    marker = tmp_path / "ran"
    (copy / "checkpoints" / "step_00000002" / "state.pt").write_bytes(hostile_pickle(marker))
    (copy / "checkpoints" / HISTORY).unlink()
    refuse(capsys, ["pretrain", "--resume", f"data.world={dataset}", *TINY_RUN, "train.steps=3",
                    f"train.out={copy}"],
           absent=[marker], mentions=["state.pt"])


def test_region_store_object_array(dataset: Path, tmp_path: Path) -> None:
    """A store's .npy holding pickled objects is refused (read with allow_pickle=False)."""
    store = tmp_path / "features"
    shutil.copytree(dataset / "features", store)
    marker = tmp_path / "ran"
    arr = np.empty(1, dtype=object)
    arr[0] = Payload(marker)
    with (store / "boxes.npy").open("wb") as f:
        np.lib.format.write_array(f, arr, allow_pickle=True)
    from vlp.data.features import RegionStore

    with pytest.raises(VlpError, match="boxes.npy") as err:
        RegionStore.open(store)
    assert "\n" not in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4])
def test_refcoco_refs_pickle(tmp_path: Path, protocol: int) -> None:
    from vlp.data.formats.refcoco import load_refs_pickle

    marker = tmp_path / "ran"
    refs = tmp_path / "refs(unc).p"
    refs.write_bytes(pickle.dumps([{"ref_id": Payload(marker)}], protocol=protocol))
    with pytest.raises(VlpError, match=r"refs\(unc\)\.p") as err:
        load_refs_pickle(refs)
    assert "\n" not in str(err.value)
    assert not marker.exists()
