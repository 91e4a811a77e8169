"""The ``vlp`` command line.

Every command reports a bad input as one line on stderr (``error: …``) and exits 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import select
import sys
import textwrap
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from vlp.errors import VlpError, one_line_warnings, set_strict

if TYPE_CHECKING:
    from vlp.tasks import TaskSpec
    from vlp.train.config import FinetuneConfig

Handler = Callable[[argparse.Namespace], int]


def _world_make(args: argparse.Namespace) -> int:
    from vlp.world.make import make_world

    out = make_world(Path(args.out), args.images, seed=args.seed, size=args.size,
                     workers=args.workers, overwrite=args.overwrite)
    print(f"world written to {out}")
    return 0


def _features_world(args: argparse.Namespace) -> int:
    from vlp.world.detector import build_world_features

    out = build_world_features(Path(args.world), Path(args.out) if args.out else None,
                               feature_dim=args.dim, epochs=args.epochs, seed=args.seed,
                               overwrite=args.overwrite)
    print(f"region features written to {out}")
    return 0


def _features_import(args: argparse.Namespace) -> int:
    from vlp.data.formats.butd_tsv import import_butd_tsv
    from vlp.data.formats.npz import import_npz_dir

    read = import_butd_tsv if args.format == "tsv" else import_npz_dir
    out = read(Path(args.src), Path(args.out), num_classes=args.num_classes,
               overwrite=args.overwrite)
    print(f"region features written to {out}")
    return 0


def _features_extract(args: argparse.Namespace) -> int:
    from vlp.convert.extract import ExtractOptions, extract_regions, load_pretrained

    options = ExtractOptions(**{f.name: getattr(args, f.name)
                                for f in dataclasses.fields(ExtractOptions)})
    options.check()  # before the backbone's weights are loaded
    detector = None
    if args.detector:
        from vlp.convert.detector import HFDetector
        detector = HFDetector(args.detector, options.max_proposals, options.min_box_frac)
    pretrained = load_pretrained(args.backbone)
    out = extract_regions(Path(args.images_json), Path(args.out), pretrained.backbone,
                          mean=pretrained.mean, std=pretrained.std, options=options,
                          image_root=args.image_root, resume=args.resume,
                          overwrite=args.overwrite, detector=detector)
    print(f"region features written to {out}")
    return 0


def _features_draw(args: argparse.Namespace) -> int:
    from vlp.data.draw import draw_regions
    from vlp.data.features import RegionStore
    from vlp.data.image_files import ImageIndex
    from vlp.fileio import atomic_path, claim_output

    out = claim_output(args.out, overwrite=args.overwrite,
                       inputs=[p for p in (args.store, args.images, args.image_root) if p])
    store = RegionStore.open(args.store)
    index = ImageIndex.read(args.images, args.image_root)
    image_id = args.image_id if args.image_id is not None else min(index.ids())
    if image_id not in store:
        raise VlpError(f"{args.store}: no regions for image {image_id}")
    drawn = draw_regions(index.open(image_id), store.get(image_id),
                         store.meta.get("class_names") or (), args.top)
    with atomic_path(out) as target:
        drawn.save(target, format="PNG")
    print(f"image {image_id} with its {min(args.top, len(store.get(image_id)))} first "
          f"regions: {out}")
    return 0


def _tokenizer_train(args: argparse.Namespace) -> int:
    from vlp.data.formats.captions import read_caption_texts
    from vlp.data.tokenizer import Tokenizer
    from vlp.fileio import claim_output

    claim_output(args.out, overwrite=args.overwrite, inputs=args.captions)
    texts = [t for path in args.captions for t in read_caption_texts(Path(path))]
    tok = Tokenizer.train(texts, Path(args.out), vocab_size=args.vocab_size)
    print(f"vocabulary of {tok.vocab_size} WordPieces written to {args.out}")
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    from vlp.config import load_config
    from vlp.train.config import PretrainConfig
    from vlp.train.pretrain import pretrain
    from vlp.train.runtime import is_main_process

    resume, run = _resumed(args)
    overrides = list(args.overrides)
    if args.init_text:
        overrides.append(f"train.init_text={args.init_text}")
    config = args.config
    if run is not None:  # the run's own config, its own directory, and what is given now
        config = config or run / "config.yaml"
        overrides = [*_own_vocabulary(run), *overrides, f"train.out={run}"]
    cfg = load_config(PretrainConfig, config, overrides,
                      recorded=run is not None and args.config is None)
    metrics = pretrain(cfg, resume=resume, overwrite=args.overwrite)
    if is_main_process():  # under torchrun, one process reports
        print("held-out: " + "  ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))
    return 0


def _task_config(args: argparse.Namespace, extra: list[str],
                 run_config: Path | None = None) -> FinetuneConfig:
    from vlp.config import apply_overrides, from_dict, load_config, override_key, read_yaml
    from vlp.tasks.config import upgrade_run_config
    from vlp.train.config import FinetuneConfig

    overrides = [f"task.name={args.task}", *extra, *args.overrides]
    if run_config is None:
        return load_config(FinetuneConfig, args.config, overrides)
    doc = upgrade_run_config(read_yaml(run_config))
    if "task" not in doc:  # a pre-training run: evaluate zero-shot on its data
        doc = {"data": doc.get("data", {})}
    return from_dict(FinetuneConfig, apply_overrides(doc, overrides), source=str(run_config),
                     overridden={override_key(o) for o in overrides}, recorded=True)


def _run_config(checkpoint: str) -> Path | None:
    """The ``config.yaml`` a fine-tuning run or checkpoint was trained with."""
    from vlp.train.checkpoint import list_checkpoints

    path = Path(checkpoint)
    steps = list_checkpoints(path / "checkpoints") if path.is_dir() else []
    for candidate in (path / "config.yaml", *(s / "config.yaml" for s in steps[-1:])):
        if candidate.is_file():
            return candidate
    return None


def _finetune(args: argparse.Namespace) -> int:
    from vlp.train.finetune import finetune
    from vlp.train.runtime import is_main_process

    resume, run = _resumed(args)
    extra = [f"train.init={args.init}"] if args.init else []
    run_config = None
    if run is not None:  # the run's own config, its own directory, and what is given now
        run_config = None if args.config else run / "config.yaml"
        extra += [*_own_vocabulary(run), f"train.out={run}"]
    metrics = finetune(_task_config(args, extra, run_config), resume=resume,
                       overwrite=args.overwrite)
    if is_main_process():  # under torchrun, one process reports
        print(f"{args.task}: " + "  ".join(f"{k}={v:.2f}" for k, v in sorted(metrics.items())))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import json

    from vlp.train.finetune import evaluate_model, score_predictions

    if bool(args.checkpoint) == bool(args.predictions):
        raise VlpError("vlp evaluate: give exactly one of --checkpoint RUN and "
                       "--predictions FILE")
    extra = [f"data.eval_split={args.split}", "train.steps=0", "train.tensorboard=false"]
    run_config = None
    if args.checkpoint:
        # the run's own config: same files, label space and model; its weights
        run_config = None if args.config else _run_config(args.checkpoint)
        extra += [f"train.init={args.checkpoint}", "train.init_text=",
                  *_own_vocabulary(args.checkpoint)]
        extra.append(f"train.out={args.out or args.checkpoint}")
    elif args.out:
        extra.append(f"train.out={args.out}")
    if args.out and args.checkpoint and Path(args.out).resolve() != \
            Path(args.checkpoint).resolve():
        from vlp.fileio import claim_output

        # a directory inside the run is fine; one that holds the run is not
        claim_output(args.out, overwrite=args.overwrite,
                     inputs=[args.checkpoint], inside_ok=True)
    cfg = _task_config(args, extra, run_config)
    if args.predictions:
        written = Path(args.out) / f"metrics_{cfg.data.eval_split}.json" if args.out else None
        if written is not None:  # claimed before scoring: nothing is half written
            from vlp.fileio import claim_output

            claim_output(written, overwrite=args.overwrite, inputs=[args.predictions])
        metrics = score_predictions(cfg, Path(args.predictions))
        if written is not None:
            from vlp.fileio import write_text_atomic

            written.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(written, json.dumps(metrics, indent=2, sort_keys=True) + "\n")
            print(f"metrics written to {written}")
    else:
        metrics = evaluate_model(cfg)
        print(f"predictions and metrics written to {cfg.train.out}")
    print(json.dumps(metrics, indent=2, sort_keys=True))
    return 0


def _import(args: argparse.Namespace) -> int:
    from vlp.convert import import_checkpoint, load_imported

    out = import_checkpoint(args.src, args.out, overwrite=args.overwrite)
    imported = load_imported(out)
    cfg = imported.config
    what = "text encoder" if imported.text_only else f"{cfg.arch} model"
    print(f"imported a {cfg.num_layers}-layer, {cfg.hidden_size}-wide {what} to {out}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from vlp.convert.export import export_hf

    done = export_hf(args.src, args.out, family=args.family, overwrite=args.overwrite)
    print(f"exported a {done.family} model ({done.architecture}) to {done.out}")
    if done.fresh:
        print(f"  left to transformers' initialisation (vlp has no value for them): "
              f"{', '.join(done.fresh)}")
    if done.left:
        print(f"  not exported (no place in {done.family}): the {', '.join(done.left)} "
              f"head{'s' if len(done.left) > 1 else ''}")
    if done.overruled:
        print(f"  not exported ({done.family} shares them with another head, whose values "
              f"were written): {', '.join(done.overruled)}")
    return 0


def _ablate(args: argparse.Namespace) -> int:
    from vlp.train.ablate import run_grid

    run_grid(args.grid, list(args.overrides), dry_run=args.dry_run)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from vlp.train.verify import verify_path

    checked, problems = verify_path(Path(args.path))
    for line in problems:
        print(f"corrupt: {line}", file=sys.stderr)
    if problems:
        raise VlpError(f"{args.path}: {len(problems)} of {checked} files failed verification")
    print(f"{args.path}: {checked} files verified, all checksums match")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from vlp.train.demo import run_demo

    run_demo(Path(args.out), images=args.images, steps=args.steps)
    return 0


def _add_world(sub: argparse._SubParsersAction) -> None:
    world = sub.add_parser("world", help="the built-in synthetic world")
    wsub = world.add_subparsers(dest="action", required=True)
    make = wsub.add_parser("make", help="generate images, captions, task annotations and "
                                        "the vocabulary (vocab.txt)")
    make.add_argument("out", help="output directory")
    make.add_argument("--images", type=int, default=1000,
                      help="number of scenes (default 1000)")
    make.add_argument("--seed", type=int, default=0,
                      help="the world's seed: same seed, same bytes (default 0)")
    make.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    make.add_argument("--workers", type=int, default=1,
                      help="processes drawing images; the output does not depend on it "
                           "(default 1)")
    _overwrite_option(make, "an existing world at OUT")
    make.set_defaults(handler=_world_make)


def _add_features(sub: argparse._SubParsersAction) -> None:
    feats = sub.add_parser("features", help="region feature stores")
    fsub = feats.add_subparsers(dest="action", required=True)
    world = fsub.add_parser("world", help="detector-like regions for a world directory")
    world.add_argument("world", help="a 'vlp world make' directory")
    world.add_argument("--out", default=None, help="store directory (default WORLD/features)")
    world.add_argument("--dim", type=int, default=128,
                       help="region feature size (default 128)")
    world.add_argument("--epochs", type=int, default=3,
                       help="region classifier epochs (default 3)")
    world.add_argument("--seed", type=int, default=0,
                       help="seed of the classifier and the boxes (default 0)")
    _overwrite_option(world, "an existing store at the output")
    world.set_defaults(handler=_features_world)
    for fmt, what in (("tsv", "a bottom-up-attention TSV file"),
                      ("npz", "a directory of per-image .npz files")):
        imp = fsub.add_parser(f"import-{fmt}", help=f"build a store from {what}")
        imp.add_argument("src", help=what)
        imp.add_argument("out", help="store directory to write")
        imp.add_argument("--num-classes", type=int, default=1600,
                         help="detector classes when the source has no distributions "
                              "(default 1600, Visual Genome's)")
        _overwrite_option(imp, "an existing store at OUT")
        imp.set_defaults(handler=_features_import, format=fmt)
    _add_features_extract(fsub)
    draw = fsub.add_parser("draw", help="an image with its regions outlined and labelled (PNG)")
    draw.add_argument("store", help="region store directory")
    draw.add_argument("images", help="where the images are: a COCO-style images list, a "
                                     "caption list or a folder")
    draw.add_argument("out", help="the PNG to write")
    draw.add_argument("--image-id", type=int, default=None,
                      help="which image (default: the lowest id)")
    draw.add_argument("--image-root", default=None,
                      help="folder the file names are relative to (default: the list's)")
    draw.add_argument("--top", type=int, default=10, help="regions drawn (default 10)")
    _overwrite_option(draw, "an existing file at OUT")
    draw.set_defaults(handler=_features_draw)


def _add_features_extract(fsub: argparse._SubParsersAction) -> None:
    from vlp.convert.extract import ExtractOptions

    ext = fsub.add_parser("extract", help="regions of your own images: selective search "
                                          "(or detector) boxes, a pretrained CNN, RoIAlign")
    ext.add_argument("images_json", help="where the images are: a COCO captions or instances "
                                         "file, a JSON list of images {id, file_name, width, "
                                         "height}, an ALBEF/BLIP caption list or a folder")
    ext.add_argument("out", help="store directory (OUT.partial/ holds finished shards "
                                 "until it is complete)")
    ext.add_argument("--image-root", default=None,
                     help="folder the file names are relative to (default: the JSON's)")
    ext.add_argument("--backbone", default="efficientnet_lite0",
                     help="pretrained CNN with an ImageNet classifier (default "
                          "efficientnet_lite0)")
    ext.add_argument("--detector", default="", metavar="DIR",
                     help="a local Hugging Face object-detection directory (save_pretrained: "
                          "config.json, weights, preprocessor_config.json) whose boxes and "
                          "confidences replace selective search (default: none)")
    for f in dataclasses.fields(ExtractOptions):
        ext.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default),
                         default=f.default, help=f"{f.metadata['help']} (default {f.default})")
    ext.add_argument("--resume", action="store_true",
                     help="continue an interrupted extraction with the same settings")
    _overwrite_option(ext, "an existing store at OUT and start an interrupted OUT.partial over")
    ext.set_defaults(handler=_features_extract)


def _add_tokenizer(sub: argparse._SubParsersAction) -> None:
    tok = sub.add_parser("tokenizer", help="WordPiece vocabularies")
    tsub = tok.add_subparsers(dest="action", required=True)
    train = tsub.add_parser("train", help="train a vocabulary on caption files")
    train.add_argument("--captions", nargs="+", required=True,
                       help="Karpathy split JSON, COCO captions JSON or plain text files")
    train.add_argument("--out", required=True, help="vocab.txt to write")
    train.add_argument("--vocab-size", type=int, default=4000,
                       help="WordPieces to learn, special tokens included (default 4000)")
    _overwrite_option(train, "an existing vocabulary file")
    train.set_defaults(handler=_tokenizer_train)


def _resume_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--resume", nargs="?", const="", default=None, metavar="RUN",
                        help="continue from the newest checkpoint: of RUN, with RUN's own "
                             "config.yaml and only the overrides given (from any directory); "
                             "without RUN, of train.out (default: start a new run)")


def _own_vocabulary(run: str | Path) -> list[str]:
    """``data.vocab`` set to a run's own copy of its vocabulary (a run, or one of its
    checkpoints), where it has one: its config may name the copy where the run used to be."""
    from vlp.convert import run_vocabulary

    own = run_vocabulary(run)
    return [f"data.vocab={own}"] if own is not None else []


def _resumed(args: argparse.Namespace) -> tuple[bool, Path | None]:
    """Whether to resume, and the run whose config.yaml to read (``--resume RUN``).

    ``--resume key=value`` is the bare flag followed by an override."""
    value = args.resume
    if value and "=" in value and not Path(value).is_dir():
        args.overrides = [value, *args.overrides]
        value = ""
    if not value:
        return value is not None, None
    run = Path(value)
    if not (run / "config.yaml").is_file():
        raise VlpError(f"--resume {run}: no config.yaml there (expected a vlp run directory)")
    return True, run


def _add_pretrain(sub: argparse._SubParsersAction) -> None:
    pre = sub.add_parser("pretrain", help="pre-train a model",
                         description="Pre-train from a YAML config; key=value overrides any "
                                     "field, e.g. train.lr=1e-4 model.num_layers=6")
    pre.add_argument("--config", default=None, help="experiment YAML (configs/*.yaml)")
    _resume_option(pre)
    _overwrite_option(pre, "the run already in train.out")
    pre.add_argument("--init-text", default=None, metavar="DIR",
                     help="start the text side from BERT: a Hugging Face BERT directory, a "
                          "'vlp import' output or 'minilm' (sets train.init_text)")
    pre.add_argument("overrides", nargs="*", help="section.field=value")
    pre.set_defaults(handler=_pretrain)


def task_list() -> str:
    """The registered tasks, one ``name: summary`` line each (``vlp.tasks.TASKS``)."""
    from vlp.tasks import TASKS

    def options(spec: TaskSpec) -> str:
        names = [f.name for f in dataclasses.fields(spec.options)]
        return f"\n      task.options: {', '.join(names)}" if names else ""

    return "\n".join(f"  {name}: {spec.summary}{options(spec)}"
                     for name, spec in sorted(TASKS.items()))


def _task_arguments(parser: argparse.ArgumentParser) -> None:
    from vlp.tasks import TASKS

    # the task list keeps its lines; the description is wrapped here instead
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = textwrap.fill(parser.description or "", 79)
    parser.epilog = f"tasks (task.name; task.options are each task's own):\n{task_list()}"
    parser.add_argument("task", help=f"one of {', '.join(sorted(TASKS))} (listed below)")
    parser.add_argument("--config", default=None, help="experiment YAML (configs/*.yaml)")
    parser.add_argument("overrides", nargs="*", help="section.field=value")


def _add_finetune(sub: argparse._SubParsersAction) -> None:
    fine = sub.add_parser("finetune", help="fine-tune on a downstream task",
                          description="Fine-tune a model on TASK; without --init it trains "
                                      "from scratch. Writes the evaluation split's predictions "
                                      "(official format) and metrics to train.out.")
    _task_arguments(fine)
    fine.add_argument("--init", default=None, metavar="RUN",
                      help="start from a pre-training run or checkpoint, a 'vlp import' "
                           "output or a Hugging Face directory (sets train.init)")
    _resume_option(fine)
    _overwrite_option(fine, "the run already in train.out")
    fine.set_defaults(handler=_finetune)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("evaluate", help="score a model or a predictions file on a task",
                        description="With --checkpoint: predict the split, write predictions "
                                    "in the task's official format and a metrics JSON. With "
                                    "--predictions: score an existing predictions file.")
    _task_arguments(ev)
    ev.add_argument("--checkpoint", default=None, metavar="RUN",
                    help="a fine-tuning run or checkpoint (or any model train.init accepts)")
    ev.add_argument("--predictions", default=None, metavar="FILE",
                    help="a predictions file in the task's official format")
    ev.add_argument("--split", default="val", help="the split to score (default val)")
    ev.add_argument("--out", default=None, help="where to write predictions and metrics "
                    "(default: the checkpoint's run directory; with --predictions: "
                    "metrics_SPLIT.json there, default: printed only)")
    _overwrite_option(ev, "a non-empty --out directory")
    ev.set_defaults(handler=_evaluate)


def _add_import(sub: argparse._SubParsersAction) -> None:
    imp = sub.add_parser("import", help="convert a Hugging Face checkpoint to vlp",
                         description="Convert a Hugging Face model directory (BERT, "
                                     "VisualBERT, LXMERT or ViLT; config.json + safetensors or "
                                     ".bin) into a vlp model directory. 'minilm' names the "
                                     "packaged all-MiniLM-L6-v2.")
    imp.add_argument("src", help="Hugging Face model directory, or 'minilm'")
    imp.add_argument("out", help="vlp directory to write (new or empty)")
    _overwrite_option(imp, "an existing directory at OUT")
    imp.set_defaults(handler=_import)


def _add_export(sub: argparse._SubParsersAction) -> None:
    from vlp.convert.export import FIELDS

    exp = sub.add_parser("export", help="write a model as a Hugging Face directory",
                         description="Write the model of a run (its newest checkpoint), a "
                                     "checkpoint or a vlp import as a Hugging Face directory "
                                     "(config.json, model.safetensors, vocab.txt) that "
                                     "transformers loads with the same outputs. Needs "
                                     "transformers.")
    exp.add_argument("src", help="a run directory, one of its checkpoints, or a vlp import")
    exp.add_argument("out", help="Hugging Face directory to write (new or empty)")
    exp.add_argument("--format", choices=("hf",), default="hf",
                     help="what to write: hf, a Hugging Face model directory (default hf)")
    exp.add_argument("--family", choices=sorted(FIELDS), default=None,
                     help="the Hugging Face model to write: bert (the text side of a "
                          "single-stream model), visual_bert, lxmert, vilt (default: the "
                          "model's own: two-stream → lxmert, patches → vilt, regions → "
                          "visual_bert)")
    _overwrite_option(exp, "an existing directory at OUT")
    exp.set_defaults(handler=_export)


def _add_ablate(sub: argparse._SubParsersAction) -> None:
    abl = sub.add_parser("ablate", help="a grid of overrides × seeds, with 95 %% intervals",
                         description="Run every (arm, seed) cell of an ablation grid (stages "
                                     "of vlp pretrain / finetune, each arm's overrides, "
                                     "several seeds) that has not finished yet, resuming "
                                     "interrupted ones, and write results.json, results.md "
                                     "and results.png: per stage and metric each arm's mean "
                                     "with its 95 % interval, and paired differences.")
    abl.add_argument("grid", help="the grid YAML (configs/ablations/*.yaml)")
    abl.add_argument("--dry-run", action="store_true",
                     help="print every cell's command and run nothing (default: run)")
    abl.add_argument("overrides", nargs="*",
                     help="grid fields as key=value, e.g. parallel=2 out=runs/x")
    abl.set_defaults(handler=_ablate)


def _overwrite_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--overwrite", action="store_true",
                        help=f"replace {what} (refused without it)")


def _add_verify(sub: argparse._SubParsersAction) -> None:
    ver = sub.add_parser("verify", help="check the checksums of a region store or a run",
                         description="Recompute the sha256 of every file of a region store "
                                     "(against its meta.json) or of every checkpoint of a run "
                                     "(against checkpoints/history.json). Exit 2 on a mismatch.")
    ver.add_argument("path", help="a region store, a run directory or one checkpoint")
    ver.set_defaults(handler=_verify)


def _config_show(args: argparse.Namespace) -> int:
    from vlp.config import load_config
    from vlp.train.config import FinetuneConfig, PretrainConfig
    from vlp.train.config_help import show

    cls = FinetuneConfig if args.kind == "finetune" else PretrainConfig
    print(show(load_config(cls, args.config, list(args.overrides))))
    return 0


def _config_new(args: argparse.Namespace) -> int:
    from vlp.train.config_help import new_config

    sys.stdout.write(new_config(args.family))
    return 0


def _add_config(sub: argparse._SubParsersAction) -> None:
    from vlp.train.config_help import FAMILIES

    cfg = sub.add_parser("config", help="every config field, or a starting config")
    csub = cfg.add_subparsers(dest="action", required=True)
    show = csub.add_parser("show", help="every field: type, value (default) and meaning",
                           description="Print every field of a pre-training (or fine-tuning) "
                                       "config: its type, its value in --config with the "
                                       "overrides, the default where that differs, and what "
                                       "it means.")
    show.add_argument("--config", default=None, help="experiment YAML (default: none, the "
                                                     "defaults)")
    show.add_argument("--kind", choices=("pretrain", "finetune"), default="pretrain",
                      help="which config (default pretrain; finetune adds the task section)")
    show.add_argument("overrides", nargs="*", help="section.field=value")
    show.set_defaults(handler=_config_show)
    new = csub.add_parser("new", help="a commented pre-training config to start from",
                          description="Write a commented pre-training YAML for a model family "
                                      "to standard output: vlp config new uniter > my.yaml")
    new.add_argument("family", choices=sorted(FAMILIES), help="the model family")
    new.set_defaults(handler=_config_new)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="world → features → tokenizer → pre-training → report")
    demo.add_argument("--out", default="demo",
                      help="directory of the world and every run; a rerun skips the stages "
                           "done there (default demo)")
    demo.add_argument("--images", type=int, default=3000,
                      help="synthetic scenes in the world (default 3000)")
    demo.add_argument("--steps", type=int, default=250,
                      help="pre-training steps of each model (default 250)")
    demo.set_defaults(handler=_demo)


def build_parser() -> argparse.ArgumentParser:
    """The ``vlp`` argument parser."""
    parser = argparse.ArgumentParser(prog="vlp", description="Vision-language pre-training.")
    parser.add_argument("--strict", action="store_true",
                        help="treat data warnings (empty captions, duplicate ids, boxes "
                             "outside the image, …) as errors")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_world, _add_features, _add_tokenizer, _add_pretrain, _add_finetune,
                _add_evaluate, _add_import, _add_export, _add_ablate, _add_verify, _add_demo,
                _add_config):
        add(sub)
    return parser


def _task_before_resume(argv: list[str]) -> list[str]:
    """``vlp finetune --resume vqa …``: ``--resume`` takes an optional RUN, so a task name
    right after it is moved back to where the task goes (``vlp finetune vqa --resume``)."""
    if len(argv) < 3 or argv[0] != "finetune" or "--resume" not in argv:
        return argv
    from vlp.tasks import TASKS

    i = argv.index("--resume")
    named = [a for a in argv[1:i] if a in TASKS]
    if i + 1 < len(argv) and argv[i + 1] in TASKS and not named \
            and not Path(argv[i + 1]).is_dir():
        return [argv[0], argv[i + 1], *argv[1:i + 1], *argv[i + 2:]]
    return argv


def _stdout_closed() -> bool:
    """Whether standard output is a pipe whose reader has gone; if so, point it at
    /dev/null, so that the interpreter's last flush does not fail again."""
    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        gone = any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no real stdout, or no poll()
        return False
    if gone:
        os.dup2(os.open(os.devnull, os.O_WRONLY), fd)
    return gone


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vlp`` console script."""
    parser = build_parser()
    argv = _task_before_resume(list(sys.argv[1:] if argv is None else argv))
    # key=value overrides may come before or after options (argparse alone takes them
    # only before the first option that follows the positionals)
    args, rest = parser.parse_known_args(argv)
    stray = [a for a in rest if "=" not in a or a.startswith("-")]
    if stray or (rest and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or rest)}")
    if rest:
        args.overrides = [*args.overrides, *rest]
    handler: Handler = args.handler
    if args.strict:
        set_strict(True)
    try:
        with warnings.catch_warnings():
            one_line_warnings()
            rc = handler(args)
            sys.stdout.flush()  # a closed pipe shows here, not at the interpreter's exit
            return rc
    except VlpError as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: resume with --resume", file=sys.stderr)
        return 130
    except BrokenPipeError:
        if not _stdout_closed():
            raise  # another pipe (a worker's): a real error
        return 141  # `vlp ... | head`: the reader has what it wanted
    finally:
        if args.strict:
            set_strict(False)


if __name__ == "__main__":
    sys.exit(main())
