"""The encoder's view of what the decoder will rebuild: the reference a coded keyframe gives, the tokens of
frames against a reference (refined when asked), and how well tokens rebuild frames from it.

Every method takes the reference it measures against, so no decision depends on hidden state.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from . import keyframe
from .fast import native_bf16, synthesis_for
from .frames import to_tensor
from .model import IMF, Reference
from .refine import mse_msssim, refine_tokens


class Analysis:
    """Measurements against a reference, for a model at the coded size (width x height)."""

    def __init__(self, model: IMF, device: torch.device, keyframe_codec: str, width: int, height: int,
                 refine_steps: int = 0, keyframe_psnr: float = 0.0, synthesis: str = "exact",
                 keyframe_check: str = "every", guess: torch.nn.Module | None = None):
        self.model, self.device, self.guess = model, device, guess
        self.keyframe_codec, self.width, self.height = keyframe_codec, width, height
        self.refine_steps, self.keyframe_psnr = refine_steps, keyframe_psnr
        self.synth = synthesis_for(model, synthesis, device)  # no-gradient syntheses (imfcodec.fast)
        # with the fast path refinement runs under bfloat16 autocast too (0.8x the time, within 0.02 dB)
        self.refine_bf16 = synthesis == "fast" and device.type == "cpu" and native_bf16()
        self.keyframe_check = keyframe_check
        self.keys = keyframe.Decoder(keyframe_codec, width, height)  # the decoder's twin, in file order

    def tensor(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """Frames as a model input on the encoder's device."""
        return to_tensor(frames, self.device)

    def reference(self, data: bytes, trial: bool = False) -> Reference:
        """What the decoder derives from keyframe data: its decoded picture's features and token. Data of a
        codec whose pictures decode only in order must come in file order, each once, unless it is a trial
        (a candidate for the next keyframe, decoded as the next without moving on)."""
        img = self.keys.peek(data) if trial else self.keys.decode(data)
        return self.model.reference(self.tensor([img]))

    @torch.no_grad()
    def first_tokens(self, x: torch.Tensor, ref: Reference | None) -> torch.Tensor:
        """The first guess of frames x's tokens against ref: the encoder's token guess when it has one (and
        a reference), else E_T's."""
        if self.guess is not None and ref is not None:
            return self.guess(x, ref.image)
        return self.model.encode_tokens(x)

    def tokens(self, x: torch.Tensor, ref: Reference | None, refine: bool = True, rate: float = 0.0,
               prev: torch.Tensor | None = None) -> torch.Tensor:
        """The first guess of frames x's tokens, refined against ref unless refine is False or refinement
        is off (with rate, a rate term from prev, the token coded before them: imfcodec.refine)."""
        t = self.first_tokens(x, ref)
        if refine and self.refine_steps:
            t = refine_tokens(self.model, ref, x, t, self.refine_steps, bf16=self.refine_bf16, rate=rate, prev=prev)
        return t

    def psnr(self, x: torch.Tensor, t: torch.Tensor, ref: Reference) -> torch.Tensor:
        """PSNR (dB, RGB) of each frame of x as tokens t rebuild it from ref."""
        return _psnr(self.synth.synthesize(t, ref), x)

    def below(self, x: torch.Tensor, t: torch.Tensor, ref: Reference) -> list[bool]:
        """Which frames of x tokens t rebuild from ref below the keyframe threshold (none when it is off)."""
        return self.check(x, t, ref)[0]

    def shown_better(self, x: torch.Tensor, t: torch.Tensor, ref: Reference) -> list[bool]:
        """Which frames of x ref's own picture, repeated, shows at least as well as tokens t rebuild them
        (by the refinement's loss, as the quality check's hold decision): every frame synthesised."""
        return _shows_better(ref.image, self.synth.synthesize(t, ref), x)

    def check(self, x: torch.Tensor, t: torch.Tensor, ref: Reference,
              hold: bool = False) -> tuple[list[bool], list[bool]]:
        """The quality check of frames x, tokens t against ref: which frames are rebuilt below the keyframe
        threshold, and (hold) which the decoder shows better as ref's own picture, repeated, than
        synthesised (by the refinement's loss, 50 MSE + 1 - MS-SSIM, so neither metric is traded away for
        the other). With the batch check, a batch whose last frame, the furthest from the reference, passes
        is judged by it alone: held whole or not."""
        n, thr = len(x), self.keyframe_psnr
        if not thr and not hold:
            return [False] * n, [False] * n
        if self.keyframe_check == "batch" and n > 1:
            y = self.synth.synthesize(t[-1:], ref)
            if not (thr and bool(_psnr(y, x[-1:])[0] < thr)):
                return [False] * n, [hold and _shows_better(ref.image, y, x[-1:])[0]] * n
        y = self.synth.synthesize(t, ref)
        low = (_psnr(y, x) < thr).tolist() if thr else [False] * n
        return low, (_shows_better(ref.image, y, x) if hold else [False] * n)


def _shows_better(key: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> list[bool]:
    """Which frames of x the keyframe picture key, repeated, shows at least as well as y does."""
    key = key.float().clamp(0, 1).expand_as(x)
    return (mse_msssim(key, x) <= mse_msssim(y.float().clamp(0, 1), x)).tolist()


def _psnr(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """PSNR (dB, RGB) of each frame of x as y (a batch, or one frame for all) shows it."""
    mse = (y.clamp(0, 1) - x).pow(2).mean(dim=(1, 2, 3))
    return -10 * torch.log10(mse.clamp_min(1e-10))
