"""Do two demo directories hold the same figures? For a refactor that must not change numbers.

    vlp demo --out /tmp/before --images 800 --steps 100      # on the old commit
    vlp demo --out /tmp/after  --images 800 --steps 100      # on the new one
    python benchmarks/same_figures.py /tmp/before /tmp/after

For every run both have finished (its metrics files and plot written), compares the logged
metrics (all but samples/s), the metrics files (``metrics_<split>.json``) and the newest
checkpoint's tensors (bit for bit; encoder weights written as ``model.*`` by runs before
the encoder was so named count as ``encoder.*``). Prints one line a run; exits 1 if any
differ.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from vlp.train.checkpoint import list_checkpoints


def metric_rows(run: Path) -> list[dict[str, object]]:
    """The run's metrics.jsonl rows without the wall-clock figures."""
    lines = (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "samples_per_s"}
            for line in lines if line.strip()]


def weights(run: Path) -> dict[str, torch.Tensor]:
    """The newest checkpoint's tensors, encoder keys under ``encoder.``."""
    found = list_checkpoints(run / "checkpoints")
    if not found:
        return {}
    tensors = load_file(str(found[-1] / "model.safetensors"))
    return {("encoder." + k[len("model."):] if k.startswith("model.") else k): v
            for k, v in tensors.items()}


def figures(run: Path) -> list[str]:
    """The files a finished run writes last: its metrics files and its plot (empty: not
    a run, or not finished)."""
    return sorted(p.name for p in (*run.glob("metrics_*.json"), *run.glob("losses.png"),
                                   *run.glob("curves.png")))


def compare(a: Path, b: Path) -> list[str]:
    """What differs between run directories ``a`` and ``b`` (empty: the same)."""
    problems = []
    if (a / "metrics.jsonl").is_file() and metric_rows(a) != metric_rows(b):
        problems.append("logged metrics")
    for file in sorted(a.glob("metrics_*.json")):
        if json.loads(file.read_text()) != json.loads((b / file.name).read_text()):
            problems.append(file.name)
    wa, wb = weights(a), weights(b)
    if set(wa) != set(wb) or any(not torch.equal(wa[k], wb[k]) for k in wa):
        problems.append("checkpoint tensors")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args()
    runs = sorted(p.name for p in args.before.iterdir() if figures(p))
    differ = 0
    for name in runs:
        if figures(args.after / name) != figures(args.before / name):
            print(f"{name:28s} not finished in {args.after}")
            continue
        problems = compare(args.before / name, args.after / name)
        differ += bool(problems)
        print(f"{name:28s} {'same' if not problems else 'DIFFER: ' + ', '.join(problems)}")
    print(f"{differ} of {len(runs)} finished runs differ")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
