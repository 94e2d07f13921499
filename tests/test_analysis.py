"""Measurements against a reference: tokens, PSNR and the keyframe threshold."""
import numpy as np
import torch

from imfcodec import keyframe
from imfcodec.analysis import Analysis
from imfcodec.model import IMF, TINY


def test_psnr_threshold_and_refinement_against_an_explicit_reference():
    torch.manual_seed(0)
    model = IMF(TINY).eval()
    frames = [np.random.default_rng(i).integers(0, 256, (64, 64, 3), dtype=np.uint8) for i in range(3)]
    data = keyframe.encode(frames[0], "png")
    off = Analysis(model, torch.device("cpu"), "png", 64, 64)
    strict = Analysis(model, torch.device("cpu"), "png", 64, 64, refine_steps=2, keyframe_psnr=100)
    with torch.no_grad():
        ref, x = off.reference(data), off.tensor(frames)
        t = off.tokens(x, ref)
        assert torch.equal(t, model.encode_tokens(x))  # no refinement asked for
        p = off.psnr(x, t, ref)
        assert p.shape == (3,) and (p < 100).all()
        assert off.below(x, t, ref) == [False] * 3 and strict.below(x, t, ref) == [True] * 3
    refined = strict.tokens(x, ref)
    with torch.no_grad():
        assert (strict.psnr(x, refined, ref) >= p - 1e-4).all()  # refinement never makes a frame worse
