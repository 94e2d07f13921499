#!/usr/bin/env bash
# Reproduces MODEL_CARD.md's numbers and the README's plot: the shipped dm=32 model on the four held-out
# clips of ../shared/data/eval (first 100 frames, 256x256) at the encoder's defaults (one AV1 CRF 40 keyframe
# per 34 frames, keyframes and segment boundaries planned together over 102 frames, scene cuts ending
# windows, ZFP rate 6), with token refinement off
# (--refine 0) and at its default (30 steps), against x264, x265, SVT-AV1 and the floors of repeating the
# first frame and each segment's keyframe. Takes about 50 minutes on 2 CPU cores (refinement is the bulk).
# benchmarks/anchors_ra.sh measures x265 with B-frames.
# benchmarks/learned_codec.sh measures the learned token coder.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/eval-256}
imfcodec rd-curve ../shared/data/eval/*.mp4 -o "$out" --frames 100 \
    --token-codec zfp --rates 6 --refine 0,30 --anchors x264,x265,svtav1
