#!/usr/bin/env bash
# Score the input-normalisation comparison (scripts/compare_input_norm.sh) and the v1 model with ser-eval:
# on the held-out RAVDESS actors of the runs' speaker split, every condition; and on ASED (Amharic; a language,
# speakers and rooms none of the models met), a random 400 clips over all 65 speakers.
# Usage: scripts/eval_input_norm.sh DATA_DIR [RUNS_DIR]
set -euo pipefail
data=${1:?usage: scripts/eval_input_norm.sh DATA_DIR [RUNS_DIR]}
runs=${2:-runs/norm-compare}
models=(ser_live/models/default.onnx "$runs"/none.onnx "$runs"/window.onnx "$runs"/session.onnx "$runs"/session-restart.onnx)
ser-eval "${models[@]}" --data ravdess="$data/ravdess" --run "$runs/session" --out "$runs/eval-ravdess" -q
ser-eval "${models[@]}" --data ased="$data/ased" --limit 400 --conditions clean,gain-20,gain+20,telephone,session \
    --out "$runs/eval-ased" -q
