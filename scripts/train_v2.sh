#!/usr/bin/env bash
# Issue 10: the runs behind the bundled model v2 and its model card, in the order they matter.
#   1. ship      the new default: speaker split seed 42 (test actors 08, 10, 15, 16 as v1; val 07, 11, 13),
#                RAVDESS + TESS (800 of its 2,798 clips) + all of ASED, window input normalisation (the default for
#                log-mel), logmel_wide features, channel augmentation, today's speech gate.
#   2. kfold-new the same recipe, speaker-grouped 4-fold CV over the 20 RAVDESS actors (each tested once), ASED
#                limited to 1,000 clips, a shorter budget (CPU time).
#   3. kfold-v1  the v1 recipe (logmel, no input normalisation, seed augmentation, the old gate) on the same folds and
#                the same budget; v1's own data (RAVDESS + TESS, TESS limited as above).
#   4. loco-ased trained on RAVDESS + TESS, tested on all of ASED (5 labels).
#   5. loco-ravdess trained on TESS + ASED, tested on all of RAVDESS.
# Usage: scripts/train_v2.sh DATA_DIR [OUT_DIR] [JOBS...]   (DATA_DIR holds ravdess/, tess/, ased/)
# A failed job is reported and the next one runs. 2-core CPU: about 2 hours for all five.
set -uo pipefail
data=${1:?usage: scripts/train_v2.sh DATA_DIR [OUT_DIR] [JOBS...]}
out=${2:-runs/v2}
shift 2 2>/dev/null || shift $#
jobs=("$@")
[ ${#jobs[@]} -eq 0 ] && jobs=(ship kfold-new kfold-v1 loco-ased loco-ravdess)
train=${SER_TRAIN:-ser-train}
export_=${SER_EXPORT:-ser-export}
R=(--data ravdess="$data/ravdess")
T=(--data tess="$data/tess" --limit tess=800)
A=(--data ased="$data/ased")
NEW=(--recipe logmel_cnn --balance-corpora --class-weights --label-smoothing 0.1 --augment channel)
V1=(--recipe logmel_cnn --balance-corpora --class-weights --label-smoothing 0.1 --augment seed
    --preset logmel --input-norm none --vad-noise-margin 0 --no-vad-agc)
SHORT=(--epochs 8 --patience 4)
run() {
    local name=$1; shift
    echo "=== $name: $(date -u +%FT%TZ) $train $*"
    if $train "$@" --out "$out/$name" -q; then
        echo "=== $name done: $(date -u +%FT%TZ)"
    else
        echo "=== $name FAILED (exit $?): $(date -u +%FT%TZ)"
        return 1
    fi
}
for job in "${jobs[@]}"; do
    case $job in
        ship) run ship "${R[@]}" "${T[@]}" "${A[@]}" "${NEW[@]}" --split speaker --epochs 20 --patience 5 &&
            $export_ "$out/ship" -o "$out/ship.onnx" --quantize int8 ;;
        kfold-new) run kfold-new "${R[@]}" "${T[@]}" "${A[@]}" --limit ased=1000 "${NEW[@]}" --folds 4 "${SHORT[@]}" ;;
        kfold-v1) run kfold-v1 "${R[@]}" "${T[@]}" "${V1[@]}" --folds 4 "${SHORT[@]}" ;;
        loco-ased) run loco-ased "${R[@]}" "${T[@]}" "${A[@]}" "${NEW[@]}" --split corpus --test-corpus ased \
            "${SHORT[@]}" && $export_ "$out/loco-ased" -o "$out/loco-ased.onnx" ;;
        loco-ravdess) run loco-ravdess "${R[@]}" "${T[@]}" "${A[@]}" --limit ased=1000 "${NEW[@]}" --split corpus \
            --test-corpus ravdess "${SHORT[@]}" ;;
        *) echo "unknown job $job (ship kfold-new kfold-v1 loco-ased loco-ravdess)"; exit 2 ;;
    esac
done
