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
#         RAVDESS 08 and 16 (held out by this run and by B, never heard by v2).
# Usage: scripts/eval_v4.sh DATA_DIR [OUT_DIR] [V2_MODEL] [V3_MODEL] [PARTS...]
#   V2_MODEL: git show 7b1e559:models/default.onnx > runs/v2.onnx;  V3_MODEL: git show 5677879:models/default.onnx
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
    python scripts/ensemble_models.py "$v2" "$out/$run.onnx" -o "$out/$name-ens.onnx"
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
    python scripts/ensemble_models.py "$v2" "$out/$run.cal.onnx" -o "$out/$ens.onnx" --int8 "$out/$ens.int8.onnx"
    ser-calibrate "$out/$ens.onnx" --run "$out/$run" "${all[@]}" -o "$out/$ens.cal.onnx" --temperature 1 \
        --affect lexicon --apply-to "$out/$ens.int8.onnx" --report "$out/calibration-$ens.json"
    local conditions=clean,gain-20,gain+20,shift,telephone
    ser-eval "$v3" "$out/$run.cal.onnx" "$out/$ens.cal.onnx" --data ased="$data/ased" --run "$out/$run" \
        --conditions "$conditions" --out "$out/eval-ased$suffix" -q
    ser-eval "$v3" "$out/$run.cal.onnx" "$out/$ens.cal.onnx" --data ravdess="$data/ravdess" \
        --speakers ravdess:08,ravdess:16 --conditions "$conditions" --out "$out/eval-ravdess$suffix" -q
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
        *) echo "unknown part $part (loco loco-long loco-long-s43 loco-long-s44 loco-ravdess-long ship ship-long)"; exit 2 ;;
    esac
done
