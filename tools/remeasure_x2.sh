#!/usr/bin/env bash
# Re-measure every weights/x2/MODEL_CARD.md table that reads the shipped x2 members, in one command, after
# `python -m tools.ship_weights RUN` has replaced them:
#
#     bash tools/remeasure_x2.sh            # all of it: ~1.5 h on a 2-core CPU in fp32, minutes on a GPU
#     bash tools/remeasure_x2.sh targets    # only what issue 14's targets read (Set14, BSD100, held-out): ~1 h
#
# The commands are the card's own, in the order of what a ship decision needs first: the held-out images (where
# fusion settings were chosen), then Set5/Set14, then BSD100. Each prints its wall time. Not re-run here:
# `python -m tools.peers` (OpenCV models only: it does not read the members).
set -euo pipefail
cd "$(dirname "$0")/.."

PART=${1:-all}
case "$PART" in all|targets) ;; *) echo "error: unknown part '$PART' (valid: all, targets)" >&2; exit 2 ;; esac
DATA=../shared/data
if [ ! -d "$DATA/Set14" ]; then
    echo "error: $DATA/Set14 not found: the card's measurements read Set5, Set14, BSD100 from ../shared/data" >&2
    exit 2
fi

t() { echo "== $(date +%T) $*"; local start=$SECONDS; "$@"; echo "== $((SECONDS - start)) s"; }

t python -m tools.fusion_curve --run weights/x2 --held-out config_scaled.yaml \
    --out tools/results/fusion_curve_holdout
t python evaluate.py --run weights/x2 --checkpoint pretrain --data $DATA/Set5 $DATA/Set14 \
    --out weights/x2/eval_pretrain_set5_set14.json
t python evaluate.py --run weights/x2 --checkpoint gan --data $DATA/Set5 $DATA/Set14 \
    --out weights/x2/eval_gan_set5_set14.json
t python -m tools.fusion_curve --run weights/x2 --sets $DATA/Set14 $DATA/BSD100
t python evaluate.py --run weights/x2 --checkpoint pretrain --data $DATA/BSD100 --no-stlpips-vgg \
    --out weights/x2/eval_pretrain_bsd100.json
t python evaluate.py --run weights/x2 --checkpoint gan --data $DATA/BSD100 --no-stlpips-vgg \
    --strategies mean perceptual texture --out weights/x2/eval_gan_bsd100.json
t python -m tools.model_card_tables weights/x2/eval_pretrain_set5_set14.json weights/x2/eval_pretrain_bsd100.json \
    weights/x2/eval_gan_set5_set14.json weights/x2/eval_gan_bsd100.json --peers weights/x2/peers_x2/peers.json
if [ "$PART" = all ]; then
    t python -m tools.uncertainty_worth --runs weights/x2 --checkpoint pretrain --sets $DATA/Set14 $DATA/BSD100 \
        --precision fp32 --out tools/results/uncertainty_worth_shipped
    t python -m tools.figure --run weights/x2 --image $DATA/Set14/ppt3.png --crop 16 250 120 200 --adaptive 0.8 \
        --guided 0.25 --columns 5 --peers ../shared/peers/opencv_dnn_superres --out tools/results/figure_ppt3.png
    t python -m tools.figure --run weights/x2 --image $DATA/Set14/monarch.png --crop 140 520 120 200 \
        --adaptive 0.8 --guided 0.25 --columns 5 --peers ../shared/peers/opencv_dnn_superres \
        --out tools/results/figure_monarch.png
fi
echo "== $(date +%T) done: paste the printed tables into weights/x2/MODEL_CARD.md and README.md"
