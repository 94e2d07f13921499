#!/usr/bin/env bash
# x265 with B-frames (x265-ra) next to low-delay x265 on the four held-out clips (first 100 frames,
# 256x256): the fair anchor for imfcodec's default stream, whose keyframes sit in the middle of their
# segments and so delay frames as B-frames do. A few minutes on 2 CPU cores; MODEL_CARD.md quotes it.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/eval-256-x265ra}
imfcodec rd-curve ../shared/data/eval/*.mp4 -o "$out" --frames 100 --token-codec none --anchors x265-ra,x265
