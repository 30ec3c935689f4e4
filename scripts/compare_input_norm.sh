#!/usr/bin/env bash
# The input-normalisation comparison of issue 9: three logmel_cnn runs on the same speaker split (seed 42: test
# actors 08, 10, 15, 16; val 07, 11, 13; TESS in training), the same channel augmentation and a short budget
# (at most 20 epochs, patience 5), differing only in --input-norm (and, for none, the v1 features: --preset logmel;
# window and session use the recipe's default, logmel_wide). Then score each with ser-eval.
# Usage: scripts/compare_input_norm.sh DATA_DIR [OUT_DIR]   (DATA_DIR holds ravdess/ and tess/)
set -euo pipefail
data=${1:?usage: scripts/compare_input_norm.sh DATA_DIR [OUT_DIR]}
out=${2:-runs/norm-compare}
for mode in session window none; do
    preset=()
    [ "$mode" = none ] && preset=(--preset logmel)
    ser-train "${preset[@]}" --data ravdess="$data/ravdess" --data tess="$data/tess" --recipe logmel_cnn --split speaker \
        --epochs 20 --patience 5 --balance-corpora --class-weights --label-smoothing 0.1 \
        --augment channel --input-norm "$mode" --out "$out/$mode" -q
    ser-export "$out/$mode" -o "$out/$mode.onnx"
done
# session mode with training sessions restarted before a clip with chance 0.5
ser-train --data ravdess="$data/ravdess" --data tess="$data/tess" --recipe logmel_cnn --split speaker \
    --epochs 20 --patience 5 --balance-corpora --class-weights --label-smoothing 0.1 \
    --augment channel --input-norm session --session-restart 0.5 --out "$out/session-restart" -q
ser-export "$out/session-restart" -o "$out/session-restart.onnx"
