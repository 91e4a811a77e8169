"""Regions, grid or patches? The three visual inputs pre-trained and fine-tuned alike on the world.

For each of UNITER (detector regions, ``configs/uniter_world.yaml``), SOHO (a CNN grid with
a visual dictionary, MVM and SOHO's sampling, ``configs/soho_world.yaml``) and ViLT
(patches, ``configs/vilt_world.yaml``) — the same 4-layer 256-wide transformer, the same
pre-training steps — it runs:

1. pre-training (``--steps``);
2. the grounding probe (``benchmarks/grounding.py``): held-out masked colour and shape
   words, with the caption's own image and with another;
3. VQA fine-tuning (``configs/vqa_world.yaml``: 1000 labelled questions, ``--vqa-steps``)
   from scratch and from the pre-trained model, validation accuracy;

and the SOHO visual-dictionary size sweep (``--vd-sizes``: pre-training and the grounding
probe at each k). Runs already finished under ``--root`` are read back, so the script
resumes where it stopped. One seed per cell (``--seed``): read small gaps as noise.

Usage: ``.venv/bin/python benchmarks/visual_inputs.py [--steps 400] [--vqa-steps 200]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from _common import RESULTS, ROOT, format_table, write_results
from grounding import probe
from vlp.config import load_config
from vlp.train.checkpoint import list_checkpoints
from vlp.train.config import FinetuneConfig, PretrainConfig
from vlp.train.finetune import build_finetuning
from vlp.train.pretrain import build_pretraining

CONFIGS = ROOT / "configs"
MODELS = {"UNITER (regions)": "uniter_world.yaml", "SOHO (grid + VD)": "soho_world.yaml",
          "ViLT (patches)": "vilt_world.yaml"}


def _overrides(section: str, values: dict[str, Any]) -> list[str]:
    """``section.key=value`` overrides (values as YAML flow)."""
    return [f"{section}.{k}={yaml.safe_dump(v, default_flow_style=True).strip()}"
            .removesuffix("\n...") for k, v in values.items()]


def pretrain(config: str, out: Path, args: argparse.Namespace, extra: list[str]) -> Path:
    """Pre-train (or read back a finished run)."""
    if not (out / "metrics.jsonl").is_file() or not list_checkpoints(out / "checkpoints"):
        cfg = load_config(PretrainConfig, CONFIGS / config, [
            f"data.world={args.world}", f"train.out={out}", f"train.steps={args.steps}",
            f"train.warmup_steps={args.steps // 10}", f"train.save_every={args.steps}",
            f"train.seed={args.seed}", "train.progress=false", *extra])
        build_pretraining(cfg).run(overwrite=True)
    return out


def vqa(config: str, out: Path, init: Path | None, args: argparse.Namespace) -> float:
    """VQA validation accuracy fine-tuned from ``init`` (None: from scratch, with the
    pre-training config's model and pixel settings)."""
    done = out / "metrics_val.json"
    if not done.is_file():
        extra = [f"train.init={init}"] if init else []
        if init is None:
            pre = yaml.safe_load((CONFIGS / config).read_text())
            extra += _overrides("model", pre["model"])
            extra += _overrides("data", {k: v for k, v in pre["data"].items()
                                         if k in ("resize", "image_root", "images")})
        cfg = load_config(FinetuneConfig, CONFIGS / "vqa_world.yaml", [
            f"data.world={args.world}", f"train.out={out}", f"train.steps={args.vqa_steps}",
            f"train.warmup_steps={args.vqa_steps // 10}", "train.save_every=0",
            f"train.eval_every={args.vqa_steps}", f"train.seed={args.seed}",
            "train.progress=false", *extra])
        run = build_finetuning(cfg)
        run.trainer.run(overwrite=True)
        run.write_results()
    return float(json.loads(done.read_text())["vqa_acc"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, default=ROOT / "demo" / "world_v2")
    parser.add_argument("--root", type=Path, default=ROOT / "runs" / "visual_inputs")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--vqa-steps", type=int, default=200)
    parser.add_argument("--vd-sizes", type=int, nargs="*", default=[64, 256, 1024])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "visual_inputs_cpu.json")
    args = parser.parse_args()
    results: dict[str, Any] = {"models": {}, "vd_sweep": {}}
    for name, config in MODELS.items():
        stem = config.removesuffix("_world.yaml")
        run = pretrain(config, args.root / f"pretrain_{stem}", args, [])
        grounding = probe(run)
        scratch = vqa(config, args.root / f"vqa_{stem}_scratch", None, args)
        pre = vqa(config, args.root / f"vqa_{stem}_pretrained", run, args)
        results["models"][name] = {"grounding": grounding, "vqa_scratch": scratch,
                                   "vqa_pretrained": pre}
        print(f"{name}: grounding {grounding}, VQA scratch {scratch:.2f} pre-trained {pre:.2f}",
              flush=True)
    main_k = yaml.safe_load((CONFIGS / "soho_world.yaml").read_text())["model"]["vd_size"]
    for k in args.vd_sizes:  # the config's own size is the SOHO run above
        run = (args.root / "pretrain_soho" if k == main_k else
               pretrain("soho_world.yaml", args.root / f"pretrain_soho_vd{k}", args,
                        [f"model.vd_size={k}"]))
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        final = rows[-1]
        results["vd_sweep"][k] = {"grounding": probe(run),
                                  **{m: final[f"eval/{m}"] for m in
                                     ("mlm_acc", "mvm_acc", "itm_acc") if f"eval/{m}" in final}}
        print(f"VD {k}: {results['vd_sweep'][k]}", flush=True)
    rows = [[name, f"{r['vqa_scratch']:.2f}", f"{r['vqa_pretrained']:.2f}",
             f"{r['grounding']['true']:.3f}", f"{r['grounding']['other']:.3f}"]
            for name, r in results["models"].items()]
    print(f"\nsame transformer (4 × 256), {args.steps} pre-training steps, VQA {args.vqa_steps} "
          f"steps on 1000 questions; seed {args.seed}")
    print(format_table(["model", "VQA scratch", "VQA pre-trained", "words: true image",
                        "other image"], rows))
    sweep = [[str(k), f"{r.get('mlm_acc', float('nan')):.3f}",
              f"{r.get('mvm_acc', float('nan')):.3f}", f"{r.get('itm_acc', float('nan')):.3f}",
              f"{r['grounding']['true']:.3f}", f"{r['grounding']['other']:.3f}"]
             for k, r in results["vd_sweep"].items()]
    print("\nSOHO visual-dictionary size (held-out accuracies; grounding words)")
    print(format_table(["k", "MLM", "MVM", "ITM", "true image", "other image"], sweep))
    write_results(args.out, {**results, "steps": args.steps, "vqa_steps": args.vqa_steps,
                             "seed": args.seed})


if __name__ == "__main__":
    main()
