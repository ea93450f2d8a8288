"""Prefect flow for the `synthesize` stage (logic in `stages.synthesize`): one task per shard.

    dvc repro synthesize
    python -m flows.synthesize --params params.yaml --raw data/raw --out data/audio

Shards run on the task runner named in params (`synthesize.task_runner`: thread by default; process, or dask /
ray for a cluster). A task that dies is retried once; finished shards are skipped on a rerun.
"""

from __future__ import annotations

from flows import runtime
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from stages.config import load_section
from stages.synthesize import ShardJob, SynthesizeParams, collect_manifest, load_jobs, summarize, synthesize_shard


@task(name="synthesize-shard", cache_policy=NO_CACHE, persist_result=False, retries=1)
def synthesize_shard_task(job: ShardJob, out_dir: str) -> int:
    return synthesize_shard(job, out_dir)


@flow(name="synthesize", persist_result=False)
def synthesize_flow(params_path: str = "params.yaml", raw_dir: str = "data/raw", out_dir: str = "data/audio") -> dict:
    """Synthesize every utterance into audio shards and write the audio manifest."""
    params = load_section(params_path, "synthesize", SynthesizeParams)
    jobs = load_jobs(params, raw_dir)
    written = runtime.map_with_progress(synthesize_shard_task, jobs, "synthesize", out_dir=out_dir)
    summary = summarize(collect_manifest(jobs, out_dir))
    rows = [("shards", len(jobs)), ("shards redone", sum(1 for n in written if n)), ("clips", summary["clips"]),
            ("hours", summary["hours"]), ("failed clips", summary["failed"])]
    rows += [(f"voice {v}", f"{s['clips']} clips, {s['hours']} h") for v, s in summary["per_voice"].items()]
    runtime.publish("synthesize", "synthesize: audio shards", runtime.markdown_table(rows))
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = runtime.stage_parser(__doc__ or "")
    parser.add_argument("--raw", default="data/raw", help="fetch output directory")
    parser.add_argument("--out", default="data/audio", help="output directory for shards and manifest")
    args = parser.parse_args(argv)
    params = load_section(args.params, "synthesize", SynthesizeParams)
    runner = runtime.make_task_runner(params.task_runner, params.max_workers)
    runtime.run_stage_flow(synthesize_flow, "synthesize", args.params, args.raw, args.out, task_runner=runner)


if __name__ == "__main__":
    main()
