"""Rebuild the mini training fixture: random packed shards (`--shards`) and the golden loss curve.

    .venv/bin/python tests/assets/train_mini/train_mini_fixture.py            # golden_losses.json only (after an intended
                                                                      # change to the model, the loss or the loop)
    .venv/bin/python tests/assets/train_mini/train_mini_fixture.py --shards   # also the shards and token spec

The shards are `model.testing.random_packed_batch` rows (toy vocabulary: 64 text ids, the specials, 32 audio codes)
in the pack stage's format (int32 ids and doc ids, int8 roles), a few KB in all. `golden_losses.json` holds the
train params, the seed and the per-step losses of `stages.train.run_train` on them; tests/stages/test_train.py
re-runs exactly that and compares.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from model.testing import random_packed_batch, toy_spec  # noqa: E402

SHARDS, TOKENIZERS, GOLDEN = HERE / "shards", HERE / "tokenizers", HERE / "golden_losses.json"
SEQ_LEN = 128
ROWS = {"train": (8, 11), "val": (4, 12)}  # split -> (rows, generator seed)
#: The golden run: the tiny preset on the toy vocabulary, every strategy on, a short warm-up and cosine.
GOLDEN_PARAMS = dict(objective="ttt", lr=3e-3, warmup_steps=2, micro_batch_size=2, grad_accum=2, steps=6,
                     eval_every=3, eval_rows=4, checkpoint_every=3)
GOLDEN_SEED = 2024


def write_shards() -> None:
    spec = toy_spec(text_vocab=64, audio_size=32)
    (TOKENIZERS / "text").mkdir(parents=True, exist_ok=True)
    spec.save(TOKENIZERS / "text" / "token_spec.json")
    for split, (rows, seed) in ROWS.items():
        ids, doc, role = random_packed_batch(spec, rows, SEQ_LEN, torch.Generator().manual_seed(seed),
                                             max_text=20, max_audio=40)
        (SHARDS / split).mkdir(parents=True, exist_ok=True)
        save_file({"input_ids": ids.to(torch.int32), "doc_ids": doc.to(torch.int32), "role": role.to(torch.int8)},
                  str(SHARDS / split / "shard-00000.safetensors"))


def golden_run(out: Path) -> list[dict[str, float]]:
    """Run the golden configuration into `out` and return dvclive's per-step values (step 0 = validation only)."""
    from stages.train import TrainParams, run_train

    run_train(TrainParams(**GOLDEN_PARAMS), GOLDEN_SEED, SHARDS, TOKENIZERS, out / "model", out / "metrics",
              progress=False)
    return read_curves(out / "metrics")


def read_curves(metrics_dir: Path) -> list[dict[str, float]]:
    """dvclive's TSV files as one dict per step: {"step": s, "train/loss": …, "val/loss": …}."""
    rows: dict[int, dict[str, float]] = {}
    for tsv in sorted((metrics_dir / "plots" / "metrics").rglob("*.tsv")):
        name = tsv.relative_to(metrics_dir / "plots" / "metrics").with_suffix("").as_posix()
        lines = tsv.read_text().splitlines()
        header = lines[0].split("\t")
        for line in lines[1:]:
            fields = dict(zip(header, line.split("\t")))
            step = int(fields["step"])
            rows.setdefault(step, {"step": step})[name] = float(fields[name.rsplit("/", 1)[-1]])
    return [rows[s] for s in sorted(rows)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", action="store_true", help="also rewrite the shards and the token spec")
    args = parser.parse_args()
    if args.shards:
        write_shards()
    with tempfile.TemporaryDirectory() as tmp:
        curves = golden_run(Path(tmp))
    keep = ("train/loss", "train/text_loss", "train/audio_loss", "val/loss", "val/text_loss", "val/audio_loss")
    losses = [{k: v for k, v in row.items() if k == "step" or k in keep} for row in curves]
    GOLDEN.write_text(json.dumps({"params": GOLDEN_PARAMS, "seed": GOLDEN_SEED, "torch": torch.__version__,
                                  "losses": losses}, indent=2) + "\n")
    print(f"wrote {GOLDEN} ({len(losses)} steps)")


if __name__ == "__main__":
    main()
