#!/usr/bin/env bash
# Issue 19: export, calibrate and score the ship run of scripts/train_v3.sh; the v3 figures of models/README.md.
#   1. ser-export the run (float + int8, with the embedding output) and ser-calibrate it on its validation speakers,
#      which come from every corpus (--holdout-corpus any): temperature, the uncertain threshold, the affect head;
#      per-corpus uncertain share and kept accuracy on the test speakers (calibration.json "test.per_corpus");
#   2. ser-eval the calibrated v3 against the bundled v2 (OLD_MODEL) on v3's held-out test speakers, one corpus at a
#      time (RAVDESS, ASED): clean, gain ±20 dB, a shifted stream. v2 never heard ASED; on RAVDESS compare only
#      speakers neither model trained on (the card says which).
# Usage: scripts/eval_v3.sh DATA_DIR [OUT_DIR] [OLD_MODEL]
set -euo pipefail
data=${1:?usage: scripts/eval_v3.sh DATA_DIR [OUT_DIR] [OLD_MODEL]}
out=${2:-runs/v3}
old=${3:-models/default.onnx}
all=(--data ravdess="$data/ravdess" --data tess="$data/tess" --data ased="$data/ased")
conditions=clean,gain-20,gain+20,shift
ser-export "$out/ship" -o "$out/ship.onnx" --quantize int8
cp "$out/ship.int8.onnx" "$out/ship.cal.int8.onnx"
ser-calibrate "$out/ship.onnx" --run "$out/ship" "${all[@]}" -o "$out/ship.cal.onnx" \
    --apply-to "$out/ship.cal.int8.onnx" --report "$out/calibration.json"
for corpus in ravdess ased; do
    ser-eval "$old" "$out/ship.cal.onnx" --data "$corpus=$data/$corpus" --run "$out/ship" --conditions "$conditions" \
        --out "$out/eval-$corpus" -q
done
