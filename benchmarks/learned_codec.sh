#!/usr/bin/env bash
# The learned token coder on the four held-out clips of ../shared/data/eval (first 100 frames, 256x256), at
# its default step (matched to ZFP rate 8's error) and at 4x and 16x that step (about ZFP rates 6 and 4: two
# bits less per value is four times the error amplitude), beside ZFP at rate 8; no anchors.
# REFINE (default 0) sets the encoder's token refinement steps: at 30 it takes about 25 minutes a point.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/eval-256-learned}
qsteps=$(python - <<'PY'
from safetensors import safe_open
from entropy.learned import shipped_prior_path
with safe_open(shipped_prior_path(32, 256), "pt") as f:
    q = float(f.metadata()["qstep"])
print(",".join(f"{q * k:.6g}" for k in (1, 4, 16)))
PY
)
imfcodec rd-curve ../shared/data/eval/*.mp4 -o "$out" --frames 100 \
    --token-codec zfp,learned --rates 8 --qsteps "$qsteps" --refine "${REFINE:-0}" --anchors none
