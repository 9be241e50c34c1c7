#!/usr/bin/env bash
# Measure the tables of weights/x<scale>-real/MODEL_CARD.md after a campaign real-photo stage was copied in
# (`mkdir -p weights/x2-real && cp -r weights/campaign/x2-real-pixel-early-v2/. weights/x2-real/`):
#
#     bash tools/remeasure_real.sh 2
#
# Per LR degradation (clean, jpeg:75, noise:5,jpeg:50, applied after the bicubic downscale, seeded): bicubic, the
# clean model (weights/x<s>, --checkpoint pretrain) and the real-photo model (pretrain and gan) on the held-out
# images (the preset's validation images), and on BSD100 for clean and jpeg:75, through tools.peers. Every command
# prints its wall time.
# Real-ESRGAN x4plus at x4 is measured by tools.peers --realesrgan in its own environment (tools/results/peers_x4_*).
set -euo pipefail
cd "$(dirname "$0")/.."

SCALE=${1:-}
case "$SCALE" in 2|4) ;; *) echo "error: give the scale, 2 or 4 (bash tools/remeasure_real.sh 2)" >&2; exit 2 ;; esac
DATA=../shared/data
if [ ! -d "$DATA/BSD100" ]; then
    echo "error: $DATA/BSD100 not found: the card's measurements read BSD100 from ../shared/data" >&2
    exit 2
fi
W=weights/x$SCALE-real
PRESET=configs/real_x$SCALE.yaml

t() { echo "== $(date +%T) $*"; local start=$SECONDS; "$@"; echo "== $((SECONDS - start)) s"; }

for SPEC in clean jpeg:75 noise:5,jpeg:50; do
    TAG=${SPEC//[:,]/_}
    DEGRADE=()
    [ "$SPEC" = clean ] || DEGRADE=(--degrade "$SPEC")
    SETS=(BSD100)
    [ "$SPEC" != noise:5,jpeg:50 ] || SETS=()
    for RUN_CK in "weights/x$SCALE pretrain clean_model" "$W pretrain pretrain" "$W gan gan"; do
        read -r RUN CHECKPOINT NAME <<< "$RUN_CK"
        [ -f "$RUN/member_0/$CHECKPOINT.safetensors" ] || continue  # a real-photo SRResNet shipped before its GAN
        t python -m tools.peers --scales "$SCALE" --sets "${SETS[@]}" --held-out $PRESET --no-opencv --stlpips-alex \
            --run "$RUN" --checkpoint "$CHECKPOINT" "${DEGRADE[@]}" --out-dir $W --out-name "eval_${NAME}_${TAG}"
    done
done
echo "== $(date +%T) done: the tables are in $W/eval_*.md"
