"""Prefect flow for the `tokenizers` stage (logic in `stages.tokenizers`).

    dvc repro tokenizers
    python -m flows.tokenizers --params params.yaml --validated data/validated --audio data/audio \
        --out models/tokenizers
"""

from __future__ import annotations

from flows import runtime
from prefect import flow

from stages.base import load_base
from stages.config import load_section
from stages.tokenizers import TokenizersParams, run_tokenizers


@flow(name="tokenizers", persist_result=False)
def tokenizers_flow(params_path: str = "params.yaml", validated_dir: str = "data/validated",
                    audio_dir: str = "data/audio", out_dir: str = "models/tokenizers") -> dict:
    """Train (or load) the text tokenizer and the audio codec."""
    base = load_base(params_path)
    params = load_section(params_path, "tokenizers", TokenizersParams)
    result = run_tokenizers(params, base.seed, validated_dir, audio_dir, out_dir)
    rows = [*result.summary.items(), ("output", runtime.relpath(out_dir))]
    runtime.publish("tokenizers", "tokenizers: shared vocabulary", runtime.markdown_table(rows))
    return result.summary


def main(argv: list[str] | None = None) -> None:
    parser = runtime.stage_parser(__doc__ or "")
    parser.add_argument("--validated", default="data/validated", help="validate output (manifests)")
    parser.add_argument("--audio", default="data/audio", help="synthesize output (audio shards)")
    parser.add_argument("--out", default="models/tokenizers", help="output directory (text/ and audio/)")
    args = parser.parse_args(argv)
    runtime.run_stage_flow(tokenizers_flow, "tokenizers", args.params, args.validated, args.audio, args.out)


if __name__ == "__main__":
    main()
