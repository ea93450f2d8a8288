"""Prefect flow for the `tokenize` stage (logic in `stages.tokenize`): one task per audio shard.

    dvc repro tokenize
    python -m flows.tokenize --params params.yaml --validated data/validated --audio data/audio \
        --tokenizers models/tokenizers --out data/tokens

Shards run on the task runner named in params (`tokenize.task_runner`, `max_workers` at once, each using
`torch_threads` cores). A task that dies is retried once; finished shards are skipped on a rerun.
"""

from __future__ import annotations

from flows import runtime
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from stages.config import load_section
from stages.tokenize import ShardResult, TokenizeJob, TokenizeParams, collect_index, plan_jobs, tokenize_shard


@task(name="tokenize-shard", cache_policy=NO_CACHE, persist_result=False, retries=1)
def tokenize_shard_task(job: TokenizeJob, audio_dir: str, tokenizers_dir: str, out_dir: str,
                        torch_threads: int) -> ShardResult:
    return tokenize_shard(job, audio_dir, tokenizers_dir, out_dir, torch_threads)


@flow(name="tokenize", persist_result=False)
def tokenize_flow(params_path: str = "params.yaml", validated_dir: str = "data/validated",
                  audio_dir: str = "data/audio", tokenizers_dir: str = "models/tokenizers",
                  out_dir: str = "data/tokens") -> dict:
    """Encode every validated utterance's audio into codes and write the token index."""
    params = load_section(params_path, "tokenize", TokenizeParams)
    jobs = plan_jobs(validated_dir, tokenizers_dir)
    encoded = runtime.map_with_progress(tokenize_shard_task, jobs, "tokenize", audio_dir=audio_dir,
                                        tokenizers_dir=tokenizers_dir, out_dir=out_dir,
                                        torch_threads=params.torch_threads)
    summary = collect_index(jobs, validated_dir, out_dir)
    audio_s, encode_s = sum(r.audio_s for r in encoded), sum(r.encode_s for r in encoded)
    speed = f"{audio_s / encode_s:.1f}" if encode_s else "-"  # this run's shards only; kept out of the outputs
    rows = [("shards redone", sum(1 for r in encoded if r.utterances)), ("encoding x real time", speed),
            *summary.items(), ("output", runtime.relpath(out_dir))]
    runtime.publish("tokenize", "tokenize: audio codes", runtime.markdown_table(rows))
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = runtime.stage_parser(__doc__ or "")
    parser.add_argument("--validated", default="data/validated", help="validate output (manifests)")
    parser.add_argument("--audio", default="data/audio", help="synthesize output (audio shards)")
    parser.add_argument("--tokenizers", default="models/tokenizers", help="tokenizers output")
    parser.add_argument("--out", default="data/tokens", help="output directory for the token shards and index")
    args = parser.parse_args(argv)
    params = load_section(args.params, "tokenize", TokenizeParams)
    runner = runtime.make_task_runner(params.task_runner, params.max_workers)
    runtime.run_stage_flow(tokenize_flow, "tokenize", args.params, args.validated, args.audio, args.tokenizers,
                           args.out, task_runner=runner)


if __name__ == "__main__":
    main()
