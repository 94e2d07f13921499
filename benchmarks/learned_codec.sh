#!/usr/bin/env bash
# The learned token coder on the four held-out clips of ../shared/data/eval (first 100 frames, 256x256), at
# its default step (matched to ZFP rate 8's error) and at 4x and 16x that step (about ZFP rates 6 and 4: two
# bits less per value is four times the error amplitude); no anchors (benchmarks/model_card.sh has them).
# Environment: FACTORS (default 1,4,16) multiplies the default step; REFINE (default 30, the encoder's
# default) sets the token refinement steps, which take about 7 minutes per clip and point on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/eval-256-learned}
qsteps=$(FACTORS=${FACTORS:-1,4,16} python - <<'PY'
import os
from safetensors import safe_open
from imfcodec.runtime import shipped_prior_path
with safe_open(shipped_prior_path(32, 256), "pt") as f:
    q = float(f.metadata()["qstep"])
print(",".join(f"{q * float(k):.6g}" for k in os.environ["FACTORS"].split(",")))
PY
)
imfcodec rd-curve ../shared/data/eval/*.mp4 -o "$out" --frames 100 \
    --token-codec learned --qsteps "$qsteps" --refine "${REFINE:-30}" --anchors none
