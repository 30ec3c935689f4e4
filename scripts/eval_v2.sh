#!/usr/bin/env bash
# Issue 10/11: calibrate and score the runs of scripts/train_v2.sh; the figures of ser_live/models/README.md come from here.
#   1. ser-calibrate the new default on its validation speakers (RAVDESS actors 07, 11, 13): temperature, uncertain
#      threshold, affect head (lexicon vs linear on the training speakers), ECE on the test actors too;
#   2. ser-eval the calibrated model against v1 (V1_MODEL, the model bundled before) on the same held-out actors
#      08, 10, 15, 16: every condition;
#   3. leave-ASED-out: calibrate the model trained without ASED on its RAVDESS validation actors (ECE on all of
#      ASED), once with a linear affect head; ser-eval it (lexicon and linear) and v1 on all of ASED (5 labels).
# Usage: scripts/eval_v2.sh DATA_DIR [OUT_DIR] [V1_MODEL]
set -euo pipefail
data=${1:?usage: scripts/eval_v2.sh DATA_DIR [OUT_DIR] [V1_MODEL]}
out=${2:-runs/v2}
v1=${3:-$out/v1.onnx}
all=(--data ravdess="$data/ravdess" --data tess="$data/tess" --data ased="$data/ased")
cp "$out/ship.int8.onnx" "$out/ship.cal.int8.onnx"
ser-calibrate "$out/ship.onnx" --run "$out/ship" "${all[@]}" -o "$out/ship.cal.onnx" \
    --apply-to "$out/ship.cal.int8.onnx" --report "$out/calibration.json"
ser-eval "$v1" "$out/ship.cal.onnx" --data ravdess="$data/ravdess" --run "$out/ship" --out "$out/eval-ravdess" -q
ser-calibrate "$out/loco-ased.onnx" --run "$out/loco-ased" "${all[@]}" -o "$out/loco-ased.linear.onnx" \
    --affect linear --report "$out/calibration-loco-ased.json"
ser-eval "$v1" "$out/loco-ased.onnx" "$out/loco-ased.linear.onnx" --data ased="$data/ased" --out "$out/eval-ased" \
    --conditions clean,gain-20,gain+20 -q
