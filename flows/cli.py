"""The `ttt` command: operator entry points that are not DVC stages.

    ttt profile gpu          # write params.yaml for a profile (tiny, gpu, full)
    ttt chat --text "..."    # talk to a trained checkpoint (text or --wav in, text + streamed WAV out)
    ttt lineage leaks        # where data went (shard / run / where / leaks), answered from the manifests
    ttt ablation             # train + evaluate ttt, ar, nar and ttt without BANOM / PPM / SST, several seeds
"""

from __future__ import annotations

import argparse
import sys

from flows import chat


def _profile(args: argparse.Namespace) -> int:
    from stages.params import apply_profile

    apply_profile(args.name, args.params)
    print(f"wrote {args.params} for profile {args.name}")
    return 0


def _lineage(args: argparse.Namespace) -> int:
    from stages.lineage import run

    return run(args)


def _ablation(args: argparse.Namespace) -> int:
    from flows.ablation import run

    return run(args)


def _lineage_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--validated", default="data/validated", help="validated manifests (default: data/validated)")
    parser.add_argument("--shards", default="data/shards", help="pack output with index.parquet (default: data/shards)")
    parser.add_argument("--limit", type=int, default=50, help="rows to print of long listings (default: 50)")
    sub = parser.add_subparsers(dest="question", required=True)
    s = sub.add_parser("shard", help="which samples, voices and texts a shard holds")
    s.add_argument("shard", help="shard path as in the index, e.g. train/shard-00000.safetensors")
    r = sub.add_parser("run", help="what the checkpoint of a dvc.lock stage was trained on")
    r.add_argument("--lock", default="dvc.lock", help="DVC lock file (default: dvc.lock)")
    r.add_argument("--stage", default="train", help="the training stage in the lock file (default: train)")
    w = sub.add_parser("where", help="where a sample / utterance / fact / document id went")
    w.add_argument("id")
    k = sub.add_parser("leaks", help="check that no held-out data reached a training document (exit 1 if any did)")
    k.add_argument("--split", default="test", choices=("val", "test"), help="held-out split (default: test)")


def _ablation_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--variants", nargs="+", default=None,
                        help="of ttt ar nar no_banom no_ppm no_sst (default: all)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds (default: 0 1 2)")
    parser.add_argument("--steps", type=int, default=0, help="training steps per run (default: train.steps)")
    parser.add_argument("--items", type=int, default=0, help="test items per task (default: evaluate.max_items)")
    parser.add_argument("--shards", default="data/shards", help="pack output (default: data/shards)")
    parser.add_argument("--tokenizers", default="models/tokenizers", help="tokenizers output")
    parser.add_argument("--validated", default="data/validated", help="validated manifests")
    parser.add_argument("--audio", default="data/audio", help="synthesize output")
    parser.add_argument("--out", default="reports/ablation", help="output directory (default: reports/ablation)")
    parser.add_argument("--keep-models", action="store_true", help="keep every run's trained model")
    parser.add_argument("--no-repro", action="store_true", help="do not run `dvc repro pack` first")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ttt", description="Text-to-Talk pipeline tools")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("profile", help="write params.yaml for a profile")
    p.add_argument("name", help="tiny, gpu or full")
    p.add_argument("--params", default="params.yaml", help="params file to write")
    p.set_defaults(run=_profile)
    c = sub.add_parser("chat", help="talk to a trained checkpoint: text or a WAV in, text and a WAV out")
    chat.add_arguments(c)
    c.set_defaults(run=chat.run)
    lin = sub.add_parser("lineage", help="where data went: a shard's samples, a run's data, an id's documents, leaks")
    _lineage_arguments(lin)
    lin.set_defaults(run=_lineage)
    abl = sub.add_parser("ablation", help="train and evaluate every ablation variant with several seeds; one table")
    _ablation_arguments(abl)
    abl.set_defaults(run=_ablation)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
