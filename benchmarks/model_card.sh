#!/usr/bin/env bash
# Reproduces MODEL_CARD.md's numbers and the README's plot: the shipped dm=32 model on the four held-out
# clips of ../shared/data/eval (first 100 frames, 256x256), ZFP token coding at rates 4, 6 and 8 with the
# encoder's token refinement off (--refine 0) and at its default (30 steps), against x264, x265, SVT-AV1 and
# the floor of repeating the first frame. Takes about 90 minutes on 2 CPU cores (refinement is the bulk:
# about 7 minutes per clip and rate). benchmarks/learned_codec.sh measures the learned token coder.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/eval-256}
imfcodec rd-curve ../shared/data/eval/*.mp4 -o "$out" --frames 100 \
    --token-codec zfp --rates 4,6,8 --refine 0,30 --anchors x264,x265,svtav1
