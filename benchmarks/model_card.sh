#!/usr/bin/env bash
# Reproduces MODEL_CARD.md's numbers and the README's plot: the shipped dm=32 model on the four held-out
# clips of ../shared/data/eval (first 100 frames, 256x256), against x264, x265, SVT-AV1 and the floor of
# repeating the first frame. Takes about 15-20 minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/eval-256}
# the learned codec at its default step (matched to ZFP rate 8's error) and at 4x and 16x that step
# (about ZFP rates 6 and 4: two bits less per value is four times the error amplitude)
qsteps=$(python - <<'PY'
from safetensors import safe_open
from entropy.learned import shipped_prior_path
with safe_open(shipped_prior_path(32, 256), "pt") as f:
    q = float(f.metadata()["qstep"])
print(",".join(f"{q * k:.6g}" for k in (1, 4, 16)))
PY
)
imfcodec rd-curve ../shared/data/eval/*.mp4 -o "$out" --frames 100 \
    --token-codec zfp,learned --rates 4,6,8 --qsteps "$qsteps" --anchors x264,x265,svtav1
