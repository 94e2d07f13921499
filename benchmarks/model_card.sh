#!/usr/bin/env bash
# Reproduces MODEL_CARD.md's numbers and the README's plot: the shipped dm=32 model on the four held-out
# clips of ../shared/data/eval (first 100 frames, 256x256), against x264, x265, SVT-AV1 and the floor of
# repeating the first frame. Takes about 15-20 minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/eval-256}
imfcodec rd-curve ../shared/data/eval/*.mp4 -o "$out" --frames 100 \
    --token-codec zfp,learned --rates 4,6,8 --anchors x264,x265,svtav1
