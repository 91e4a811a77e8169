"""The ``vlp`` command line.

Every command reports a bad input as one line on stderr (``error: …``) and exits 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from vlp.errors import VlpError

Handler = Callable[[argparse.Namespace], int]


def _world_make(args: argparse.Namespace) -> int:
    from vlp.data.world import make_world

    out = make_world(Path(args.out), args.images, seed=args.seed, size=args.size,
                     workers=args.workers)
    print(f"world written to {out}")
    return 0


def _features_world(args: argparse.Namespace) -> int:
    from vlp.data.detector import build_world_features

    out = build_world_features(Path(args.world), Path(args.out) if args.out else None,
                               feature_dim=args.dim, epochs=args.epochs, seed=args.seed)
    print(f"region features written to {out}")
    return 0


def _features_import(args: argparse.Namespace) -> int:
    from vlp.data.features import import_butd_tsv, import_npz_dir

    if args.format == "tsv":
        out = import_butd_tsv(Path(args.src), Path(args.out), num_classes=args.num_classes)
    else:
        out = import_npz_dir(Path(args.src), Path(args.out), num_classes=args.num_classes)
    print(f"region features written to {out}")
    return 0


def _tokenizer_train(args: argparse.Namespace) -> int:
    from vlp.data.readers import read_caption_texts
    from vlp.data.tokenizer import Tokenizer

    texts = [t for path in args.captions for t in read_caption_texts(Path(path))]
    tok = Tokenizer.train(texts, Path(args.out), vocab_size=args.vocab_size)
    print(f"vocabulary of {tok.vocab_size} WordPieces written to {args.out}")
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    from vlp.config import load_config
    from vlp.train.config import PretrainConfig
    from vlp.train.pretrain import pretrain

    cfg = load_config(PretrainConfig, args.config, args.overrides)
    metrics = pretrain(cfg, resume=args.resume)
    print("held-out: " + "  ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from vlp.train.demo import run_demo

    run_demo(Path(args.out), images=args.images, steps=args.steps)
    return 0


def _add_world(sub: argparse._SubParsersAction) -> None:
    world = sub.add_parser("world", help="the built-in synthetic world")
    wsub = world.add_subparsers(dest="action", required=True)
    make = wsub.add_parser("make", help="generate images, captions and annotations")
    make.add_argument("out", help="output directory")
    make.add_argument("--images", type=int, default=1000)
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--size", type=int, default=64, help="image side in pixels")
    make.add_argument("--workers", type=int, default=1)
    make.set_defaults(handler=_world_make)


def _add_features(sub: argparse._SubParsersAction) -> None:
    feats = sub.add_parser("features", help="region feature stores")
    fsub = feats.add_subparsers(dest="action", required=True)
    world = fsub.add_parser("world", help="detector-like regions for a world directory")
    world.add_argument("world")
    world.add_argument("--out", default=None, help="store directory (default WORLD/features)")
    world.add_argument("--dim", type=int, default=128, help="region feature size")
    world.add_argument("--epochs", type=int, default=3, help="region classifier epochs")
    world.add_argument("--seed", type=int, default=0)
    world.set_defaults(handler=_features_world)
    for fmt, what in (("tsv", "a bottom-up-attention TSV file"),
                      ("npz", "a directory of per-image .npz files")):
        imp = fsub.add_parser(f"import-{fmt}", help=f"build a store from {what}")
        imp.add_argument("src")
        imp.add_argument("out")
        imp.add_argument("--num-classes", type=int, default=1600,
                         help="detector classes when the source has no distributions")
        imp.set_defaults(handler=_features_import, format=fmt)


def _add_tokenizer(sub: argparse._SubParsersAction) -> None:
    tok = sub.add_parser("tokenizer", help="WordPiece vocabularies")
    tsub = tok.add_subparsers(dest="action", required=True)
    train = tsub.add_parser("train", help="train a vocabulary on caption files")
    train.add_argument("--captions", nargs="+", required=True,
                       help="Karpathy split JSON, COCO captions JSON or plain text files")
    train.add_argument("--out", required=True, help="vocab.txt to write")
    train.add_argument("--vocab-size", type=int, default=4000)
    train.set_defaults(handler=_tokenizer_train)


def _add_pretrain(sub: argparse._SubParsersAction) -> None:
    pre = sub.add_parser("pretrain", help="pre-train a model",
                         description="Pre-train from a YAML config; key=value overrides any "
                                     "field, e.g. train.lr=1e-4 model.num_layers=6")
    pre.add_argument("--config", default=None, help="experiment YAML (configs/*.yaml)")
    pre.add_argument("--resume", action="store_true",
                     help="continue from the newest checkpoint in train.out")
    pre.add_argument("overrides", nargs="*", help="section.field=value")
    pre.set_defaults(handler=_pretrain)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="world → features → tokenizer → pre-training → report")
    demo.add_argument("--out", default="demo")
    demo.add_argument("--images", type=int, default=3000)
    demo.add_argument("--steps", type=int, default=600)
    demo.set_defaults(handler=_demo)


def build_parser() -> argparse.ArgumentParser:
    """The ``vlp`` argument parser."""
    parser = argparse.ArgumentParser(prog="vlp", description="Vision-language pre-training.")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_world, _add_features, _add_tokenizer, _add_pretrain, _add_demo):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vlp`` console script."""
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except VlpError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: resume with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
