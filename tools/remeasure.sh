#!/usr/bin/env bash
# Measure every table of weights/x<scale>/MODEL_CARD.md that reads the shipped generators, after new ones were
# copied in (a campaign GAN stage: `cp -r weights/campaign/x2-gan-early/. weights/x2/`):
#
#     bash tools/remeasure.sh 2          # x2: held-out images first (what a ship decision reads), then the test sets
#     bash tools/remeasure.sh 4 figure   # x4, and the card's crop figure
#
# Every command prints its wall time. Not re-run: `python -m tools.peers` for the OpenCV models (peers_x<s>/), which
# do not read our generators.
set -euo pipefail
cd "$(dirname "$0")/.."

SCALE=${1:-}
PART=${2:-tables}
case "$SCALE" in 2) PRESET=config_scaled.yaml ;; 4) PRESET=config_scaled_x4.yaml ;;
    *) echo "error: give the scale, 2 or 4 (bash tools/remeasure.sh 2)" >&2; exit 2 ;; esac
case "$PART" in tables|figure) ;; *) echo "error: unknown part '$PART' (valid: tables, figure)" >&2; exit 2 ;; esac
DATA=../shared/data
if [ ! -d "$DATA/Set14" ]; then
    echo "error: $DATA/Set14 not found: the card's measurements read Set5, Set14, BSD100 from ../shared/data" >&2
    exit 2
fi
W=weights/x$SCALE

t() { echo "== $(date +%T) $*"; local start=$SECONDS; "$@"; echo "== $((SECONDS - start)) s"; }

for CHECKPOINT in pretrain gan; do
    t python -m tools.peers --scales "$SCALE" --sets --held-out $PRESET --no-opencv --stlpips-alex --run $W \
        --checkpoint $CHECKPOINT --out-dir $W --out-name eval_${CHECKPOINT}_heldout
    t python evaluate.py --run $W --checkpoint $CHECKPOINT --data $DATA/Set5 $DATA/Set14 --no-stlpips-vgg \
        --out $W/eval_${CHECKPOINT}_set5_set14.json
    t python evaluate.py --run $W --checkpoint $CHECKPOINT --data $DATA/BSD100 --no-stlpips-vgg \
        --out $W/eval_${CHECKPOINT}_bsd100.json
done
t python -m tools.model_card_tables $W/eval_pretrain_set5_set14.json $W/eval_pretrain_bsd100.json \
    $W/eval_gan_set5_set14.json $W/eval_gan_bsd100.json --peers $W/peers_x$SCALE/peers.json
if [ "$PART" = figure ]; then
    t python -m tools.figure --run $W --image $DATA/Set14/ppt3.png --crop 16 250 120 200 --columns 5 \
        --out tools/results/figure_x${SCALE}_ppt3.png
fi
echo "== $(date +%T) done: paste the printed tables into $W/MODEL_CARD.md and README.md"
