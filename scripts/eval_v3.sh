#!/usr/bin/env bash
# Issue 19: export, calibrate and score the ship run of scripts/train_v3.sh; the v3 figures of ser_live/models/README.md.
#   1. ser-export the run (float + int8, with the embedding output) and ser-calibrate it on its validation speakers,
#      which come from every corpus (--holdout-corpus any): temperature, the uncertain threshold, the affect head;
#      per-corpus uncertain share and kept accuracy on the test speakers (calibration.json "test.per_corpus");
#   2. ser-eval the calibrated v3 against the bundled v2 (OLD_MODEL) on held-out speakers, one corpus at a
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
# temperature 1 as for v2: a fitted temperature sharpened the confidence and made it worse on an unseen corpus
ser-calibrate "$out/ship.onnx" --run "$out/ship" "${all[@]}" -o "$out/ship.cal.onnx" --temperature 1 \
    --apply-to "$out/ship.cal.int8.onnx" --report "$out/calibration.json"
# ASED: v3's 11 held-out speakers (v2 never heard ASED). RAVDESS: v3 held out actors 02, 08, 16; v2 trained on 02,
# so the comparison uses 08 and 16, which neither model heard
ser-eval "$old" "$out/ship.cal.onnx" --data ased="$data/ased" --run "$out/ship" --conditions "$conditions" \
    --out "$out/eval-ased" -q
ser-eval "$old" "$out/ship.cal.onnx" --data ravdess="$data/ravdess" --speakers ravdess:08,ravdess:16 \
    --conditions "$conditions" --out "$out/eval-ravdess" -q
