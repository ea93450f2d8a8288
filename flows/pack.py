"""Prefect flow for the `pack` stage (logic in `stages.pack`).

    dvc repro pack
    python -m flows.pack --params params.yaml --validated data/validated --tokens data/tokens \
        --tokenizers models/tokenizers --out data/shards
"""

from __future__ import annotations

from flows import runtime
from prefect import flow

from stages.base import load_base
from stages.config import load_section
from stages.pack import PackParams, run_pack


@flow(name="pack", persist_result=False)
def pack_flow(params_path: str = "params.yaml", validated_dir: str = "data/validated", tokens_dir: str = "data/tokens",
              tokenizers_dir: str = "models/tokenizers", out_dir: str = "data/shards") -> dict:
    """Build the task documents and pack them into sharded fixed-length rows with a lineage index."""
    base = load_base(params_path)
    params = load_section(params_path, "pack", PackParams)
    summary = run_pack(params, base.seed, validated_dir, tokens_dir, tokenizers_dir, out_dir)
    rows = [("seq_len", params.seq_len)]
    for split, s in summary["splits"].items():
        rows += [(f"{split}: documents / rows / shards", f"{s['documents']} / {s['rows']} / {s['shards']}"),
                 (f"{split}: packing efficiency (non-pad)", s["efficiency"]),
                 (f"{split}: documents per task", s["per_task"]), (f"{split}: dropped", s["dropped"] or "none")]
    rows.append(("output", runtime.relpath(out_dir)))
    runtime.publish("pack", "pack: packed training shards", runtime.markdown_table(rows))
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = runtime.stage_parser(__doc__ or "")
    parser.add_argument("--validated", default="data/validated", help="validate output (manifests)")
    parser.add_argument("--tokens", default="data/tokens", help="tokenize output (audio codes)")
    parser.add_argument("--tokenizers", default="models/tokenizers", help="tokenizers output")
    parser.add_argument("--out", default="data/shards", help="output directory for the shards and index")
    args = parser.parse_args(argv)
    runtime.run_stage_flow(pack_flow, "pack", args.params, args.validated, args.tokens, args.tokenizers, args.out)


if __name__ == "__main__":
    main()
