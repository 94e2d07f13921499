"""Token coders behind one interface (:class:`TokenCoder`): ZFP fixed-rate, the learned prior and the
backward-adaptive predictive coder."""
from typing import Sequence

from .base import CODEC_IDS, TokenCoder
from .predictive import PredictiveCoder
from .zfp import ZfpCoder

__all__ = ["CODEC_IDS", "PredictiveCoder", "TokenCoder", "ZfpCoder", "make_coder", "coder_from_header"]


def make_coder(name: str, dm: int, **kw) -> TokenCoder:
    """A coder for encoding: `zfp` takes rate=, `learned` prior= (a file) and qstep=, `predictive` qstep=
    (and momentum=)."""
    if name == "zfp":
        return ZfpCoder(dm, kw.get("rate", 8.0))
    if name == "predictive":
        return PredictiveCoder(dm, **kw)
    if name == "learned":
        from .learned import LearnedCoder
        return LearnedCoder.for_encoding(dm, **kw)
    raise ValueError(f"unknown token codec {name!r} (known: {', '.join(CODEC_IDS)})")


def coder_from_header(codec_id: int, dm: int, params: bytes, priors: Sequence[str] = ()) -> TokenCoder:
    """The decoder's coder, rebuilt from what the header stores (a learned coder's prior among priors)."""
    if codec_id == CODEC_IDS["zfp"]:
        return ZfpCoder.from_params(dm, params)
    if codec_id == CODEC_IDS["learned"]:
        from .learned import LearnedCoder
        return LearnedCoder.from_params(dm, params, priors)
    if codec_id == CODEC_IDS["predictive"]:
        return PredictiveCoder.from_params(dm, params)
    raise ValueError(f"unknown token codec id {codec_id}")
