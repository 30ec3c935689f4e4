#!/usr/bin/env bash
# Issue 19, leave-ASED-out for the v3 recipe: v3 is the logit mean of v2 (RAVDESS + TESS, never heard ASED) and B
# (the same recipe on RAVDESS + TESS 800 + ASED). Its leave-ASED-out twin is the logit mean of v2 and B trained the
# same way *without ASED* (the ship recipe: corpus-balanced, class-weighted, label smoothing 0.1, channel
# augmentation; 12 epochs, patience 4 -- B itself was stopped at epoch 12), tested on all 65 ASED speakers, which
# neither part heard.
#   1. train B-without-ASED (ser-train --split corpus --test-corpus ased: ASED is loaded only to be the test set);
#   2. export it, join it with v2 (scripts/ensemble_models.py);
#   3. ser-eval v2, B-without-ASED and the joined model on all of ASED (clean, gain +20 dB, shift);
#   4. leave-RAVDESS-out for B's recipe: trained on TESS 800 + ASED, tested on all 20 RAVDESS actors (v2's recipe
#      without RAVDESS would be TESS's two speakers alone, so only B's part is measured).
# Usage: scripts/loco_v3.sh DATA_DIR [OUT_DIR] [V2_MODEL]
#   V2_MODEL: v2's file, e.g. git show 7b1e559:ser_live/models/default.onnx > runs/v2.onnx
# Run here with TF_NUM_INTRAOP_THREADS=1 (one core each, both trainings side by side: ~60 and ~90 min).
set -euo pipefail
data=${1:?usage: scripts/loco_v3.sh DATA_DIR [OUT_DIR] [V2_MODEL]}
out=${2:-runs/v3}
v2=${3:-runs/v2.onnx}
if [ ! -f "$out/loco-ased-ship/model.keras" ]; then
    ser-train --data ravdess="$data/ravdess" --data tess="$data/tess" --data ased="$data/ased" --limit tess=800 \
        --recipe logmel_cnn --balance-corpora --class-weights --label-smoothing 0.1 --augment channel \
        --split corpus --test-corpus ased --epochs 12 --patience 4 --out "$out/loco-ased-ship"
fi
ser-export "$out/loco-ased-ship" -o "$out/loco-ased-ship.onnx"
python scripts/ensemble_models.py --overwrite "$v2" "$out/loco-ased-ship.onnx" -o "$out/loco-ased-ens.onnx"
ser-eval "$v2" "$out/loco-ased-ship.onnx" "$out/loco-ased-ens.onnx" --data ased="$data/ased" \
    --conditions clean,gain+20,shift --out "$out/eval-loco-ased" -q
if [ ! -f "$out/loco-ravdess-ship/model.keras" ]; then
    ser-train --data ravdess="$data/ravdess" --data tess="$data/tess" --data ased="$data/ased" --limit tess=800 \
        --recipe logmel_cnn --balance-corpora --class-weights --label-smoothing 0.1 --augment channel \
        --split corpus --test-corpus ravdess --epochs 12 --patience 4 --out "$out/loco-ravdess-ship"
fi
ser-export "$out/loco-ravdess-ship" -o "$out/loco-ravdess-ship.onnx"
ser-eval "$out/loco-ravdess-ship.onnx" --data ravdess="$data/ravdess" --conditions clean,gain+20,shift \
    --out "$out/eval-loco-ravdess" -q
