#!/usr/bin/env bash
# Issue 19: score the runs of scripts/train_v4.sh (all of TESS instead of 800 clips) against v2 and v3.
#   loco  leave-ASED-out: export loco-ased-fulltess, join it with v2 (the twin of "v2 + the ship run"), and ser-eval
#         v2, it and the joined model on all 65 ASED speakers, which none of them heard (clean, gain +20 dB, shift);
#         calibrate the joined model on the run's validation speakers and report its uncertain windows on ASED;
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
for part in "${parts[@]}"; do
    case $part in
        loco)
            ser-export "$out/loco-ased-fulltess" -o "$out/loco-ased-fulltess.onnx"
            python scripts/ensemble_models.py "$v2" "$out/loco-ased-fulltess.onnx" -o "$out/loco-ased-ens.onnx"
            ser-eval "$v2" "$out/loco-ased-fulltess.onnx" "$out/loco-ased-ens.onnx" --data ased="$data/ased" \
                --conditions clean,gain+20,shift --out "$out/eval-loco-ased" -q
            # the uncertain state where it matters: calibrated as v4 is (each corpus of the run's validation
            # speakers; here RAVDESS alone), reported on all of ASED, which the twin never heard
            ser-calibrate "$out/loco-ased-ens.onnx" --run "$out/loco-ased-fulltess" "${all[@]}" --temperature 1 \
                --affect lexicon -o "$out/loco-ased-ens.cal.onnx" --report "$out/calibration-loco-ased-ens.json" ;;
        ship)
            ser-export "$out/ship" -o "$out/ship.onnx" --quantize int8
            ser-calibrate "$out/ship.onnx" --run "$out/ship" "${all[@]}" -o "$out/ship.cal.onnx" --temperature 1 \
                --affect lexicon --report "$out/calibration-ship.json"
            python scripts/ensemble_models.py "$v2" "$out/ship.cal.onnx" -o "$out/ens.onnx" --int8 "$out/ens.int8.onnx"
            ser-calibrate "$out/ens.onnx" --run "$out/ship" "${all[@]}" -o "$out/ens.cal.onnx" --temperature 1 \
                --affect lexicon --apply-to "$out/ens.int8.onnx" --report "$out/calibration-ens.json"
            conditions=clean,gain-20,gain+20,shift,telephone
            ser-eval "$v3" "$out/ship.cal.onnx" "$out/ens.cal.onnx" --data ased="$data/ased" --run "$out/ship" \
                --conditions "$conditions" --out "$out/eval-ased" -q
            ser-eval "$v3" "$out/ship.cal.onnx" "$out/ens.cal.onnx" --data ravdess="$data/ravdess" \
                --speakers ravdess:08,ravdess:16 --conditions "$conditions" --out "$out/eval-ravdess" -q ;;
        *) echo "unknown part $part (loco ship)"; exit 2 ;;
    esac
done
