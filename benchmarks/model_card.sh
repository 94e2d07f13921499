#!/usr/bin/env bash
# Reproduces MODEL_CARD.md's numbers and the README's plot: the shipped dm=32 model on the four held-out
# clips of ../shared/data/eval (first 100 frames, 256x256) at the encoder's defaults (AV1 keyframes at CRF 40
# every 34 frames and at scene cuts, ZFP rate 6), with token refinement off (--refine 0) and at its default
# (30 steps), against x264, x265, SVT-AV1 and the floors of repeating the first frame and the latest
# keyframe. Takes about 35 minutes on 2 CPU cores (refinement is the bulk).
# benchmarks/learned_codec.sh measures the learned token coder.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/eval-256}
imfcodec rd-curve ../shared/data/eval/*.mp4 -o "$out" --frames 100 \
    --token-codec zfp --rates 6 --refine 0,30 --anchors x264,x265,svtav1
