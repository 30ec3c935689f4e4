#!/usr/bin/env bash
# Issue 19, one change at a time: what made B's recipe travel worse than v2's? v2 (RAVDESS + *all* of TESS) scores
# 34.5 % clip UAR on all of ASED, which it never heard; B's recipe without ASED (RAVDESS + TESS *800*, 12 epochs)
# 24.8 %, and v2's own 12-epoch leave-ASED-out run with TESS 800 25.6 %. Both recipes use corpus balancing, class
# weights, label smoothing 0.1 and channel augmentation; what differs is TESS's size (and v2's 20-epoch budget).
#   loco-ased-fulltess    B-without-ASED (scripts/loco_v3.sh) with only --limit tess=800 removed: RAVDESS (all 20
#                         actors) + all 2,798 TESS clips -> all 65 ASED speakers; 12 epochs, patience 4.
#   ship                  the v4 candidate: B's run (scripts/train_v3.sh ship) with all of TESS and B's effective
#                         budget (12 epochs, patience 4): RAVDESS + TESS + ASED, speakers of every corpus held out
#                         (--holdout-corpus any, 15 % test, 10 % validation, seed 42).
#   loco-ravdess-fulltess all of TESS + all of ASED -> all 20 RAVDESS actors (B's part 4 without the TESS limit).
#   loco-ased-specaug     loco-ased-fulltess + --specaugment (one change);  loco-ased-mixup  + --mixup 0.2;
#   loco-ased-long        loco-ased-fulltess with a 20-epoch budget (one change: validation loss still fell at 12).
#   ship-long             ship with the same 20-epoch budget: the candidate that lever makes.
#   kfold-all             the ship recipe in 4 speaker-grouped folds over every corpus at once (every RAVDESS actor,
#                         ASED speaker and TESS speaker tested once): the K-fold figures of the benchmark. 9.5 min a
#                         fold with two TensorFlow threads on 2026-12-05; --resume keeps the folds a killed run
#                         finished (the first attempt was OOM-killed at the start of fold 4 beside another run).
#   kfold-all-long        kfold-all with v5's 20-epoch budget: the K-fold figures of the shipped recipe.
#   loco-ravdess-long     loco-ravdess-fulltess with the 20-epoch budget (leave-RAVDESS-out of the shipped recipe).
#   loco-ased-long-s43    loco-ased-long with training seed 43 (same split): the second seed of the twin column;
#   loco-ased-long-s44    and seed 44, the third (the first two differed by 8.2 points).
#   loco-ravdess-long-s43, loco-ravdess-long-s44  loco-ravdess-long with training seeds 43 and 44: v6's
#                         leave-RAVDESS-out twin (eval_v4.sh … loco-ravdess-seeds joins the three).
#   kfold-all-long-s43, kfold-all-long-s44  kfold-all-long with training seeds 43 and 44 (the same folds: split
#                         seed 42): with it, the K-fold figure of v6's three-seed join (eval_v4.sh … kfold-seeds3);
#                         one fold alone: add --fold K.
#   loco-ased-adv-s42, -s43, -s44  loco-ased-long with a speaker-adversarial branch (--adversary speaker, scale 0.1):
#                         the gradient-reversal lever, judged on three seeds against loco-ased-long's three
#                         (eval_v4.sh … loco-adv).  loco-ased-adv1-s42, loco-ased-adv03-s42: the same with scale 1.0
#                         and 0.3 (one seed each: pointers). loco-ased-ramp05-s42, loco-ased-ramp1-s42: scale 0.5 / 1.0
#                         reached on DANN's schedule (--adversary-ramp), seed 42.
#   ship-long-s43, ship-long-s44  ship-long with training seeds 43 and 44 (same split): with ship-long, the three
#                         parts of model v6 (scripts/eval_v4.sh … ship-seeds joins them).
# Run here with TF_NUM_INTRAOP_THREADS=1 (one core each, two jobs side by side on the 2-core CPU).
# Usage: scripts/train_v4.sh DATA_DIR [OUT_DIR] [JOBS...]   (DATA_DIR holds ravdess/, tess/, ased/)
set -uo pipefail
data=${1:?usage: scripts/train_v4.sh DATA_DIR [OUT_DIR] [JOBS...]}
out=${2:-runs/v4}
shift 2 2>/dev/null || shift $#
jobs=("$@")
[ ${#jobs[@]} -eq 0 ] && jobs=(loco-ased-fulltess ship loco-ravdess-fulltess)
train=${SER_TRAIN:-ser-train}
D=(--data ravdess="$data/ravdess" --data tess="$data/tess" --data ased="$data/ased")
RECIPE=(--recipe logmel_cnn --balance-corpora --class-weights --label-smoothing 0.1 --augment channel
        --epochs 12 --patience 4)
source "$(dirname "$0")/run_job.sh"
for job in "${jobs[@]}"; do
    case $job in
        loco-ased-fulltess) run "$job" "${D[@]}" "${RECIPE[@]}" --split corpus --test-corpus ased ;;
        ship) run ship "${D[@]}" "${RECIPE[@]}" --split speaker --holdout-corpus any --test-frac 0.15 \
            --val-frac 0.1 ;;
        loco-ravdess-fulltess) run "$job" "${D[@]}" "${RECIPE[@]}" --split corpus --test-corpus ravdess ;;
        loco-ased-specaug) run "$job" "${D[@]}" "${RECIPE[@]}" --split corpus --test-corpus ased --specaugment ;;
        loco-ased-mixup) run "$job" "${D[@]}" "${RECIPE[@]}" --split corpus --test-corpus ased --mixup 0.2 ;;
        loco-ased-long) run "$job" "${D[@]}" "${RECIPE[@]}" --split corpus --test-corpus ased --epochs 20 ;;
        ship-long) run ship-long "${D[@]}" "${RECIPE[@]}" --split speaker --holdout-corpus any --test-frac 0.15 \
            --val-frac 0.1 --epochs 20 ;;
        kfold-all) run "$job" "${D[@]}" "${RECIPE[@]}" --folds 4 --holdout-corpus any --resume ;;
        kfold-all-long) run "$job" "${D[@]}" "${RECIPE[@]}" --folds 4 --holdout-corpus any --resume --epochs 20 ;;
        loco-ravdess-long) run "$job" "${D[@]}" "${RECIPE[@]}" --split corpus --test-corpus ravdess --epochs 20 ;;
        loco-ased-long-s43) run "$job" "${D[@]}" "${RECIPE[@]}" --split corpus --test-corpus ased --epochs 20 \
            --seed 43 --split-seed 42 ;;
        loco-ased-long-s44) run "$job" "${D[@]}" "${RECIPE[@]}" --split corpus --test-corpus ased --epochs 20 \
            --seed 44 --split-seed 42 ;;
        loco-ravdess-long-s43|loco-ravdess-long-s44) run "$job" "${D[@]}" "${RECIPE[@]}" --split corpus \
            --test-corpus ravdess --epochs 20 --seed "${job#loco-ravdess-long-s}" --split-seed 42 ;;
        kfold-all-long-s43|kfold-all-long-s44) run "$job" "${D[@]}" "${RECIPE[@]}" --folds 4 --holdout-corpus any \
            --resume --epochs 20 --seed "${job#kfold-all-long-s}" --split-seed 42 ;;
        loco-ased-adv-s42|loco-ased-adv-s43|loco-ased-adv-s44) run "$job" "${D[@]}" "${RECIPE[@]}" --split corpus \
            --test-corpus ased --epochs 20 --seed "${job#loco-ased-adv-s}" --split-seed 42 --adversary speaker \
            --adversary-scale 0.1 ;;
        loco-ased-adv1-s42|loco-ased-adv03-s42) scale=1.0; [ "$job" = loco-ased-adv03-s42 ] && scale=0.3
            run "$job" "${D[@]}" "${RECIPE[@]}" --split corpus --test-corpus ased --epochs 20 --seed 42 \
            --split-seed 42 --adversary speaker --adversary-scale "$scale" ;;
        loco-ased-ramp05-s42|loco-ased-ramp1-s42) scale=1.0; [ "$job" = loco-ased-ramp05-s42 ] && scale=0.5
            run "$job" "${D[@]}" "${RECIPE[@]}" --split corpus --test-corpus ased --epochs 20 --seed 42 \
            --split-seed 42 --adversary speaker --adversary-scale "$scale" --adversary-ramp ;;
        ship-long-s43|ship-long-s44) run "$job" "${D[@]}" "${RECIPE[@]}" --split speaker --holdout-corpus any \
            --test-frac 0.15 --val-frac 0.1 --epochs 20 --seed "${job#ship-long-s}" --split-seed 42 ;;
        *) echo "unknown job $job (loco-ased-fulltess ship loco-ravdess-fulltess loco-ased-specaug loco-ased-mixup" \
                "loco-ased-long ship-long kfold-all kfold-all-long loco-ravdess-long loco-ased-long-s43" \
                "loco-ased-long-s44 loco-ravdess-long-s43 loco-ravdess-long-s44 kfold-all-long-s43 kfold-all-long-s44" \
                "loco-ased-adv-s42 loco-ased-adv-s43 loco-ased-adv-s44 loco-ased-adv1-s42 loco-ased-adv03-s42" \
                "loco-ased-ramp05-s42 loco-ased-ramp1-s42" \
                "ship-long-s43 ship-long-s44)"; exit 2 ;;
    esac
done
