"""The `ttt` command: operator entry points that are not DVC stages.

    ttt profile gpu          # write params.yaml for a profile (tiny, gpu, full)
    ttt chat --text "..."    # talk to a trained checkpoint (text or --wav in, text + streamed WAV out)
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
