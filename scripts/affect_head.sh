#!/usr/bin/env bash
# Issue 11, way (b): an arousal/valence head trained *with* the network (multi-task), against the shipped model's
# ways (lexicon mapping, linear head on the frozen classifier), on held-out speakers and on a corpus neither saw.
#   1. train the shipped recipe (scripts/compare_input_norm.sh's `window` run: logmel_cnn, channel augmentation,
#      RAVDESS + TESS, 20 epochs, speaker split seed 42: test actors 08, 10, 15, 16, validation 07, 11, 13) with
#      --affect-weight 1.0: targets are the NRC VAD coordinates of each clip's label;
#   2. export it (two outputs, int8 copy) and ser-calibrate it like the shipped model (T stored 1, threshold on the
#      validation actors): the report scores head, lexicon and linear on the validation and test actors;
#   3. a copy with the lexicon mapping, for the leave-one-corpus-out comparison of the same network;
#   4. ser-eval the shipped model, the head model and its lexicon copy on the test actors and on all of ASED.
# Usage: scripts/affect_head.sh DATA_DIR [OUT_DIR]   (DATA_DIR holds ravdess/, tess/ and ased/)
set -euo pipefail
data=${1:?usage: scripts/affect_head.sh DATA_DIR [OUT_DIR]}
out=${2:-runs/mt}
corpora=(--data ravdess="$data/ravdess" --data tess="$data/tess")
[ -f "$out/head/model.keras" ] || ser-train "${corpora[@]}" --recipe logmel_cnn --split speaker --epochs 20 \
    --patience 5 --balance-corpora --class-weights --label-smoothing 0.1 --augment channel --input-norm window \
    --affect-weight 1.0 --out "$out/head" -q
ser-export "$out/head" -o "$out/head.onnx" --quantize int8
cp "$out/head.int8.onnx" "$out/head.cal.int8.onnx"
ser-calibrate "$out/head.onnx" --run "$out/head" "${corpora[@]}" --temperature 1 -o "$out/head.cal.onnx" \
    --apply-to "$out/head.cal.int8.onnx" --report "$out/calibration.json"
ser-calibrate "$out/head.onnx" --run "$out/head" "${corpora[@]}" --temperature 1 --affect lexicon \
    -o "$out/head.lexicon.onnx" --report "$out/calibration-lexicon.json"
ser-eval ser_live/models/default.onnx "$out/head.cal.onnx" --data ravdess="$data/ravdess" --run "$out/head" \
    --out "$out/eval-ravdess" --conditions clean,gain-20,gain+20,telephone,shift,session -q
ser-eval ser_live/models/default.onnx "$out/head.cal.onnx" "$out/head.lexicon.onnx" --data ased="$data/ased" \
    --out "$out/eval-ased" --conditions clean,gain-20,gain+20 -q
