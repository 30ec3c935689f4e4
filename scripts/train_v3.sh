#!/usr/bin/env bash
# Issue 19: the runs behind model v3 and its card. The v2 recipe (logmel_cnn, window input normalisation,
# logmel_wide, corpus-balanced and class-weighted, label smoothing 0.1); what changes is the data and how the
# recipe is chosen: by speaker-grouped folds *within* RAVDESS and ASED and by leave-one-corpus-out, not by one
# corpus's four test actors.
#   ship          RAVDESS (20 actors) + TESS 800 + all of ASED, channel augmentation, 20 epochs; speakers of every
#                 corpus held out (--holdout-corpus any, 15 % test, 10 % validation): the shipped model.
#   kfold-all     4 speaker-grouped folds over RAVDESS *and* ASED at once (each actor and each ASED speaker tested
#                 exactly once; TESS always trains): per-corpus 4-fold CV with every corpus in training.
#   kfold-noased  the same folds' protocol without ASED in the data (RAVDESS + TESS 800): only ASED's presence
#                 changes (issue 19.2).
#   loco-ased     RAVDESS + TESS 800 -> all of ASED;   loco-ravdess  TESS 800 + all of ASED -> all of RAVDESS.
# The four benchmark jobs run at a reduced budget (no augmentation copies, at most 10 epochs, patience 4) so that
# all of them fit beside the ship run on a 2-core CPU; they compare data choices under one budget, and the card
# says so. Per-corpus figures: cv_metrics.json "per_corpus", metrics.json "per_corpus".
# Usage: scripts/train_v3.sh DATA_DIR [OUT_DIR] [JOBS...]   (DATA_DIR holds ravdess/, tess/, ased/)
set -uo pipefail
data=${1:?usage: scripts/train_v3.sh DATA_DIR [OUT_DIR] [JOBS...]}
out=${2:-runs/v3}
shift 2 2>/dev/null || shift $#
jobs=("$@")
[ ${#jobs[@]} -eq 0 ] && jobs=(ship kfold-all kfold-noased loco-ased loco-ravdess)
train=${SER_TRAIN:-ser-train}
R=(--data ravdess="$data/ravdess")
T=(--data tess="$data/tess" --limit tess=800)
A=(--data ased="$data/ased")
RECIPE=(--recipe logmel_cnn --balance-corpora --class-weights --label-smoothing 0.1)
BENCH=(--augment none --epochs 10 --patience 4)
source "$(dirname "$0")/run_job.sh"
for job in "${jobs[@]}"; do
    case $job in
        ship) run ship "${R[@]}" "${T[@]}" "${A[@]}" "${RECIPE[@]}" --augment channel --split speaker \
            --holdout-corpus any --test-frac 0.15 --val-frac 0.1 --epochs 20 --patience 5 ;;
        kfold-all) run kfold-all "${R[@]}" "${T[@]}" "${A[@]}" "${RECIPE[@]}" "${BENCH[@]}" --folds 4 \
            --holdout-corpus any ;;
        kfold-noased) run kfold-noased "${R[@]}" "${T[@]}" "${RECIPE[@]}" "${BENCH[@]}" --folds 4 ;;
        loco-ased) run loco-ased "${R[@]}" "${T[@]}" "${A[@]}" "${RECIPE[@]}" "${BENCH[@]}" --split corpus \
            --test-corpus ased ;;
        loco-ravdess) run loco-ravdess "${R[@]}" "${T[@]}" "${A[@]}" "${RECIPE[@]}" "${BENCH[@]}" --split corpus \
            --test-corpus ravdess ;;
        *) echo "unknown job $job (ship kfold-all kfold-noased loco-ased loco-ravdess)"; exit 2 ;;
    esac
done
