#!/usr/bin/env bash
# Issue 19: score the runs of scripts/train_v4.sh (all of TESS instead of 800 clips) against v2 and v3.
#   loco  leave-ASED-out: export loco-ased-fulltess, join it with v2 (the twin of "v2 + the ship run"), and ser-eval
#         v2, it and the joined model on all 65 ASED speakers, which none of them heard (clean, gain +20 dB, shift);
#         calibrate the joined model on the run's validation speakers and report its uncertain windows on ASED;
#   loco-long  the same for loco-ased-long (the 20-epoch budget);  loco-long-s43, loco-long-s44  its other seeds;
#   loco-ravdess-long  leave-RAVDESS-out of the shipped recipe: export it and ser-eval it on all 20 RAVDESS actors,
#         which it never heard (clean, gain +20 dB, shift);  ship-long  "ship" for the ship-long run
#         (pass the model it would replace as V3_MODEL);
#   ship  export the ship run (float + int8, embedding output), calibrate it on its validation speakers (every
#         corpus; temperature 1 as for v2/v3), join it with v2 as v3 joins B, calibrate the joined file the same way,
#         and ser-eval v3 (V3_MODEL), the ship run and the joined model on the ship run's held-out ASED speakers and on
#         RAVDESS 08 and 16 (held out by this run and by B, never heard by v2);
#   ship-seeds  model v6: join ship-long and its seeds 43 and 44 (train_v4.sh ship-long-s43 ship-long-s44) into one
#         graph averaging the three's logits (float + int8), calibrate it as above, ser-eval the model it replaces
#         (V3_MODEL: v5, git show 31b6284:ser_live/models/default.onnx), v6 and the two-seed joins on the held-out speakers; its
#         twin: the three leave-ASED-out seeds joined the same way, ser-eval'd with each pair on all of ASED and
#         calibrated on its RAVDESS validation actors (the uncertain share on a language it never heard);
#   ship-seeds-mics  v6 (seeds3.cal) against the model it replaces (V3_MODEL) on the held-out speakers through what
#         amateur microphones and rooms add: reverberation, noise at 20 and 10 dB SNR, and as one live session.
#   kfold-seeds3  the K-fold figure of v6's own kind, a join of three seeds: for each fold that kfold-all-long and
#         its seeds 43 and 44 (train_v4.sh kfold-all-long-s43 kfold-all-long-s44) all finished, export the fold models,
#         join seeds 42+43 and all three, and ser-eval each seed and both joins on that fold's RAVDESS and ASED test
#         speakers (eval-kfold-seeds3/foldK-CORPUS; table: scripts/kfold_join_table.py). It replaced kfold-seeds (the
#         two-seed join alone), whose figures it repeats.
#   kfold-profiles  issue 18's profile gain on many more unseen speakers: for each fold of kfold-seeds3 (FOLDS="1 2 3 4"
#         by default, so two calls can share the folds), scripts/profile_gain.py with that fold's joined model on its
#         RAVDESS and ASED test speakers (each model never heard its own: 20 actors and 65 speakers over the folds;
#         10 draws; profile-kfold/foldK); the pooled table: scripts/pool_profile_gain.py runs/v4/profile-kfold/fold*.
#   loco-adv  the speaker-adversarial lever: export train_v4.sh's loco-ased-adv-s42/-s43/-s44, join them, and
#         ser-eval the join and each seed next to v6's twin (loco-seeds3, from ship-seeds) on all 65 ASED speakers,
#         which none of them heard (eval-loco-adv).
#   loco-ravdess-seeds  v6's leave-RAVDESS-out twin: loco-ravdess-long and its seeds 43, 44 (train_v4.sh
#         loco-ravdess-long-s43 loco-ravdess-long-s44) joined, ser-eval'd with each seed on all 20 RAVDESS actors,
#         and calibrated on its validation speakers (the uncertain share on RAVDESS, which it never heard).
# Usage: scripts/eval_v4.sh DATA_DIR [OUT_DIR] [V2_MODEL] [V3_MODEL] [PARTS...]
#   V2_MODEL: git show 7b1e559:ser_live/models/default.onnx > runs/v2.onnx;  V3_MODEL: git show 5677879:ser_live/models/default.onnx
set -euo pipefail
data=${1:?usage: scripts/eval_v4.sh DATA_DIR [OUT_DIR] [V2_MODEL] [V3_MODEL] [PARTS...]}
out=${2:-runs/v4}
v2=${3:-runs/v2.onnx}
v3=${4:-runs/v3.onnx}
shift 4 2>/dev/null || shift $#
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(loco ship)
all=(--data ravdess="$data/ravdess" --data tess="$data/tess" --data ased="$data/ased")
# loco RUN NAME: export RUN, join it with v2 as NAME-ens, ser-eval the three on all of ASED, calibrate the join
loco() {
    local run=$1 name=$2
    ser-export "$out/$run" -o "$out/$run.onnx"
    python scripts/ensemble_models.py --overwrite "$v2" "$out/$run.onnx" -o "$out/$name-ens.onnx"
    ser-eval "$v2" "$out/$run.onnx" "$out/$name-ens.onnx" --data ased="$data/ased" \
        --conditions clean,gain+20,shift --out "$out/eval-$name" -q
    # the uncertain state where it matters: calibrated as v4 is (each corpus of the run's validation speakers;
    # here RAVDESS alone), reported on all of ASED, which the twin never heard
    ser-calibrate "$out/$name-ens.onnx" --run "$out/$run" "${all[@]}" --temperature 1 --affect lexicon \
        -o "$out/$name-ens.cal.onnx" --report "$out/calibration-$name-ens.json"
}
# loco_ravdess RUN: export RUN and ser-eval it on all of RAVDESS (no twin: v2 trained on RAVDESS)
loco_ravdess() {
    local run=$1
    ser-export "$out/$run" -o "$out/$run.onnx"
    ser-eval "$out/$run.onnx" --data ravdess="$data/ravdess" --conditions clean,gain+20,shift \
        --out "$out/eval-$run" -q
}
# ship RUN ENS SUFFIX: export RUN (float + int8), calibrate it, join it with v2 as ENS, calibrate that, ser-eval
# V3_MODEL (or the model it is to replace), RUN and ENS on RUN's held-out ASED speakers and on RAVDESS 08 and 16
ship() {
    local run=$1 ens=$2 suffix=$3
    ser-export "$out/$run" -o "$out/$run.onnx" --quantize int8
    ser-calibrate "$out/$run.onnx" --run "$out/$run" "${all[@]}" -o "$out/$run.cal.onnx" --temperature 1 \
        --affect lexicon --report "$out/calibration-$run.json"
    python scripts/ensemble_models.py --overwrite "$v2" "$out/$run.cal.onnx" -o "$out/$ens.onnx" --int8 "$out/$ens.int8.onnx"
    ser-calibrate "$out/$ens.onnx" --run "$out/$run" "${all[@]}" -o "$out/$ens.cal.onnx" --temperature 1 \
        --affect lexicon --apply-to "$out/$ens.int8.onnx" --report "$out/calibration-$ens.json"
    local conditions=clean,gain-20,gain+20,shift,telephone
    ser-eval "$v3" "$out/$run.cal.onnx" "$out/$ens.cal.onnx" --data ased="$data/ased" --run "$out/$run" \
        --conditions "$conditions" --out "$out/eval-ased$suffix" -q
    ser-eval "$v3" "$out/$run.cal.onnx" "$out/$ens.cal.onnx" --data ravdess="$data/ravdess" \
        --speakers ravdess:08,ravdess:16 --conditions "$conditions" --out "$out/eval-ravdess$suffix" -q
}
# exported RUN.onnx, unless it is there already (a seed run exported by hand keeps its file)
exported() { [ -f "$out/$1.onnx" ] || ser-export "$out/$1" -o "$out/$1.onnx"; }
# ship_seeds: v6 = the logit mean of ship-long's three seeds, and its leave-ASED-out twin made the same way
ship_seeds() {
    local conditions=clean,gain-20,gain+20,shift,telephone s
    for s in ship-long ship-long-s43 ship-long-s44 loco-ased-long loco-ased-long-s43 loco-ased-long-s44; do
        exported $s
    done
    python scripts/ensemble_models.py --overwrite "$out"/ship-long{,-s43,-s44}.onnx -o "$out/seeds3.onnx" --int8 "$out/seeds3.int8.onnx"
    ser-calibrate "$out/seeds3.onnx" --run "$out/ship-long" "${all[@]}" -o "$out/seeds3.cal.onnx" --temperature 1 \
        --affect lexicon --apply-to "$out/seeds3.int8.onnx" --report "$out/calibration-seeds3.json"
    python scripts/ensemble_models.py --overwrite "$out"/ship-long{,-s43}.onnx -o "$out/seeds-42-43.onnx"
    python scripts/ensemble_models.py --overwrite "$out"/ship-long{,-s44}.onnx -o "$out/seeds-42-44.onnx"
    python scripts/ensemble_models.py --overwrite "$out"/ship-long-s4{3,4}.onnx -o "$out/seeds-43-44.onnx"
    local candidates=("$v3" "$out/seeds3.cal.onnx" "$out"/seeds-4{2-43,2-44,3-44}.onnx)
    ser-eval "${candidates[@]}" --data ased="$data/ased" --run "$out/ship-long" --conditions "$conditions" \
        --out "$out/eval-ased-seeds" -q
    ser-eval "${candidates[@]}" --data ravdess="$data/ravdess" --speakers ravdess:08,ravdess:16 \
        --conditions "$conditions" --out "$out/eval-ravdess-seeds" -q
    python scripts/ensemble_models.py --overwrite "$out"/loco-ased-long{,-s43,-s44}.onnx -o "$out/loco-seeds3.onnx"
    python scripts/ensemble_models.py --overwrite "$out"/loco-ased-long{,-s43}.onnx -o "$out/loco-seeds-42-43.onnx"
    python scripts/ensemble_models.py --overwrite "$out"/loco-ased-long{,-s44}.onnx -o "$out/loco-seeds-42-44.onnx"
    python scripts/ensemble_models.py --overwrite "$out"/loco-ased-long-s4{3,4}.onnx -o "$out/loco-seeds-43-44.onnx"
    ser-eval "$out/loco-seeds3.onnx" "$out"/loco-seeds-4{2-43,2-44,3-44}.onnx --data ased="$data/ased" \
        --conditions clean,gain+20,shift --out "$out/eval-loco-seeds" -q
    ser-calibrate "$out/loco-seeds3.onnx" --run "$out/loco-ased-long" "${all[@]}" --temperature 1 --affect lexicon \
        -o "$out/loco-seeds3.cal.onnx" --report "$out/calibration-loco-seeds3.json"
}
kfold_seeds3() {
    local k corpus s run
    for k in 1 2 3 4; do
        for s in kfold-all-long kfold-all-long-s43 kfold-all-long-s44; do
            [ -f "$out/$s/fold$k/metrics.json" ] || continue 2
        done
        [ -f "$out/eval-kfold-seeds3/fold$k-ased/eval.json" ] && continue  # scored by an earlier call
        for s in 42 43 44; do  # distinct names: ser-eval labels each model by its file name
            run=kfold-all-long; [ "$s" = 42 ] || run=kfold-all-long-s$s
            [ -f "$out/kfold-s$s-fold$k.onnx" ] || ser-export "$out/$run/fold$k" -o "$out/kfold-s$s-fold$k.onnx"
        done
        python scripts/ensemble_models.py --overwrite "$out"/kfold-s4{2,3}-fold$k.onnx -o "$out/kfold-seeds-fold$k.onnx"
        python scripts/ensemble_models.py --overwrite "$out"/kfold-s4{2,3,4}-fold$k.onnx -o "$out/kfold-seeds3-fold$k.onnx"
        for corpus in ravdess ased; do
            ser-eval "$out"/kfold-s4{2,3,4}-fold$k.onnx "$out"/kfold-seeds{,3}-fold$k.onnx \
                --data "$corpus=$data/$corpus" --run "$out/kfold-all-long/fold$k" --conditions clean \
                --out "$out/eval-kfold-seeds3/fold$k-$corpus" -q
        done
    done
}
kfold_profiles() {
    local k speakers
    for k in ${FOLDS:-1 2 3 4}; do
        [ -f "$out/kfold-seeds3-fold$k.onnx" ] || { echo "kfold-profiles: run kfold-seeds3 first (fold $k)"; return 1; }
        [ -f "$out/profile-kfold/fold$k/rows.json" ] && continue  # measured by an earlier call
        speakers=$(python -c "import json, sys; print(','.join(s for s in json.load(open(sys.argv[1]))['test_speakers']
                   if s.split(':')[0] in ('ravdess', 'ased')))" "$out/kfold-all-long/fold$k/metrics.json")
        python scripts/profile_gain.py --model "$out/kfold-seeds3-fold$k.onnx" --data ravdess="$data/ravdess" \
            --data ased="$data/ased" --speakers "$speakers" --draws 10 --workers 1 --methods softmax \
            --out "$out/profile-kfold/fold$k"
    done
}
loco_adv() {
    local s
    for s in 42 43 44; do exported loco-ased-adv-s$s; done
    python scripts/ensemble_models.py --overwrite "$out"/loco-ased-adv-s4{2,3,4}.onnx -o "$out/loco-adv3.onnx"
    ser-eval "$out/loco-adv3.onnx" "$out"/loco-ased-adv-s4{2,3,4}.onnx "$out/loco-seeds3.onnx" \
        --data ased="$data/ased" --conditions clean,gain+20,shift --out "$out/eval-loco-adv" -q
}
loco_ravdess_seeds() {
    local s
    for s in loco-ravdess-long loco-ravdess-long-s43 loco-ravdess-long-s44; do exported $s; done
    python scripts/ensemble_models.py --overwrite "$out"/loco-ravdess-long{,-s43,-s44}.onnx -o "$out/loco-ravdess-seeds3.onnx"
    ser-eval "$out/loco-ravdess-seeds3.onnx" "$out"/loco-ravdess-long{,-s43,-s44}.onnx --data ravdess="$data/ravdess" \
        --conditions clean,gain+20,shift --out "$out/eval-loco-ravdess-seeds" -q
    # the uncertain state on the corpus it never heard: calibrated on the run's validation speakers (ASED, TESS)
    ser-calibrate "$out/loco-ravdess-seeds3.onnx" --run "$out/loco-ravdess-long" "${all[@]}" --temperature 1 \
        --affect lexicon -o "$out/loco-ravdess-seeds3.cal.onnx" --report "$out/calibration-loco-ravdess-seeds3.json"
}
for part in "${parts[@]}"; do
    case $part in
        loco) loco loco-ased-fulltess loco-ased ;;
        loco-long) loco loco-ased-long loco-ased-long ;;
        loco-long-s43) loco loco-ased-long-s43 loco-ased-long-s43 ;;
        loco-long-s44) loco loco-ased-long-s44 loco-ased-long-s44 ;;
        loco-ravdess-long) loco_ravdess loco-ravdess-long ;;
        ship) ship ship ens "" ;;
        ship-long) ship ship-long ens-long -long ;;
        ship-seeds) ship_seeds ;;
        loco-ravdess-seeds) loco_ravdess_seeds ;;
        kfold-seeds3) kfold_seeds3 ;;
        kfold-profiles) kfold_profiles ;;
        loco-adv) loco_adv ;;
        ship-seeds-mics)
            ser-eval "$v3" "$out/seeds3.cal.onnx" --data ased="$data/ased" --run "$out/ship-long" \
                --conditions clean,reverb,noise20,noise10,session --out "$out/eval-ased-mics" -q
            ser-eval "$v3" "$out/seeds3.cal.onnx" --data ravdess="$data/ravdess" --speakers ravdess:08,ravdess:16 \
                --conditions clean,reverb,noise20,noise10,session --out "$out/eval-ravdess-mics" -q ;;
        *) echo "unknown part $part (loco loco-long loco-long-s43 loco-long-s44 loco-ravdess-long ship ship-long" \
                "ship-seeds ship-seeds-mics kfold-seeds3 kfold-profiles loco-adv loco-ravdess-seeds)"; exit 2 ;;
    esac
done
