#!/usr/bin/env bash
# The GPU checks and figures of the README's "GPU figures", in one run on one CUDA machine: what CPU tests cannot
# reach. Each step has its own time limit and log under OUT; a failed step does not stop the rest.
#
#   bash benchmarks/gpu_suite.sh OUT [SECONDS]      # SECONDS: the whole run's budget (default 540)
#   DEVICE=cpu PRESET=tiny bash benchmarks/gpu_suite.sh /tmp/smoke 300     # a smoke run of the script on a CPU
#
# 1. tests/model on CUDA: FlexAttention forward + backward against dense SDPA for every mask kind;
# 2. the train stage on CUDA (DeepSpeed ZeRO-2, FlexAttention, bf16): a 200-step probe of the tiny recipe;
# 3. benchmarks at the gpu preset (the Qwen2.5-0.5B shape, bf16): attention.py and train_throughput.py (packed
#    FlexAttention rows vs one padded row per document: tokens/s, MFU, peak memory, and where each path's time goes:
#    OUT/profile/<path>.txt), inference.py (block diffusion
#    with the KV cache vs full recompute vs AR; `--codec none`: GPU images lack librosa);
# 4. side by side until the budget is spent: the gpu-preset model trained by the train stage on the tiny shards,
#    stopped by its time limit (loss curve, tokens/s, peak memory: OUT/runs/gpu_preset/metrics), and the tiny recipe
#    at seeds 1234 and 99 with as many steps as the probe's speed says fit (x3 for the shared GPU, validation and
#    checkpoints: with 4 trainers on one H200 each took ~118 ms a step all told, its logged step time ~55 ms),
#    exported to OUT/runs/tiny_<steps>_s<seed>/
#    for `python -m flows.evaluate --checkpoint …` on any machine. A run stopped early keeps its last checkpoint.
#
# Needs python3 with torch, transformers and pytest, plus deepspeed and dvclive (`pip install -e .[gpu]`), and the
# tiny pipeline's data/shards and models/tokenizers (`bash scripts/run.sh`).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$(realpath -m "${1:?usage: gpu_suite.sh OUT [SECONDS]}")
budget=${2:-540}
device=${DEVICE:-cuda}
preset=${PRESET:-gpu}
py=${PYTHON:-python3}
deadline=$(( $(date +%s) + budget ))
mkdir -p "$out/runs" "$out/cwd"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
export root out py

train() {  # train NAME SEED KEY=VALUE...: the train stage into OUT/runs/NAME (DeepSpeed where CUDA is)
  # Run outside the checkout: dvclive then writes plain files without loading the DVC repo (GPU images lack DVC).
  local name=$1 seed=$2
  shift 2
  local sets=()
  for kv in "$@"; do sets+=(--set "$kv"); done
  cd "$out/cwd" && "$py" -m stages.train --params "$root/params.yaml" --shards "$root/data/shards" \
    --tokenizer "$root/models/tokenizers" --seed "$seed" --out "$out/runs/$name" --metrics "$out/runs/$name/metrics" \
    --no-progress "${sets[@]}"
}
export -f train

step() {  # step NAME LIMIT_S CMD...: run (a command or `train`) with a time limit, log to OUT/NAME.log, show its end
  local name=$1 limit=$2 start rc
  shift 2
  start=$(date +%s)
  timeout "$limit" bash -c '"$@"' step "$@" >"$out/$name.log" 2>&1
  rc=$?
  echo "== $name: exit $rc after $(( $(date +%s) - start )) s"
  tail -n 6 "$out/$name.log"
}

step env 30 bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; $py -c \
  'import torch, transformers, deepspeed; print(torch.__version__, torch.version.cuda, transformers.__version__, \
deepspeed.__version__)'"
step tests_model 180 "$py" -m pytest -q -p no:cacheprovider tests/model -rs
step probe_tiny 150 train probe 1234 steps=200 eval_every=100 checkpoint_every=200

step attention 150 "$py" benchmarks/attention.py --device "$device" --preset "$preset" --seq-len 4096 --batch 4 \
  --out "$out/attention.json"
step train_throughput 150 "$py" -m benchmarks.train_throughput --device "$device" --preset "$preset" --seq-len 2048 \
  --batch 8 --precision bf16 --steps 5 --warmup 2 --out "$out/train_throughput.json" --profile-dir "$out/profile"
step inference 150 "$py" benchmarks/inference.py --device "$device" --models "$preset" --steps 32 8 --repeats 2 \
  --codec none --out "$out/inference.json"

left=$(( deadline - $(date +%s) - 30 ))
if [ "$left" -lt 60 ]; then echo "== no time left for the training runs"; exit 0; fi
steps=$("$py" - "$out/runs/probe/metrics/metrics.json" "$left" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))["train"]
step_s = m["tokens"] / 200 / m["tokens_per_s_median"]
print(max(100, min(19200, int(int(sys.argv[2]) / (3 * step_s) // 100 * 100))))
EOF
) || steps=1200
echo "== tiny runs: $steps steps each, $left s left"
for seed in 1234 99; do
  step "tiny_s$seed" "$left" train "tiny_${steps}_s$seed" "$seed" "steps=$steps" checkpoint_every=400 &
done
step gpu_preset $(( left - 10 )) train gpu_preset 1234 "model=$preset" lr=0.001 warmup_steps=50 micro_batch_size=8 \
  grad_accum=4 steps=100000 eval_every=50 eval_rows=64 checkpoint_every=100000 precision=bf16
wait
for d in "$out"/runs/*; do [ -f "$d/model.safetensors" ] && rm -rf "$d/checkpoints"; done
rm -rf "$out/cwd"
ls -la "$out/runs"/*
