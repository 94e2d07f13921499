"""The fast synthesis path for CPU inference: the same network, computed more cheaply.

`imfcodec decode` (and the realtime and balanced encoders' no-gradient syntheses: the keyframe check and
keyframe planning) spend nearly all their time in :meth:`IMF.synthesize`. On two CPU cores at 256x256 a
plain float32 synthesis costs about 70 ms a frame on one thread (batch 8), of which (each module timed
alone) the frame decoder's convolutions take about 40 %, the 1/8-scale cross-attention (1024 queries over
1024 keys, values 480 wide) about 27 %, the transformer blocks 25 % and the token decoder 10 %; this path
brings it to about 44 ms (``benchmarks/speed.py --profile`` shows the pipeline's stages). Three changes, none
touching the weights or the bitstream:

* **Local attention at 1/8.** The shipped network's 1/8 cross-attention is local: on the four eval
  clips 99.99 % of every query's weight falls on the 5x5 reference positions around its own (the token
  flow has already warped the reference), so :class:`LocalAlign` computes the logits of only those 25 keys
  and sums their values by shifted adds: the rest of the softmax weighed less than 1e-4. For each batch it
  computes the first frame's full attention and falls back to full attention for the batch when some
  query puts less than 99.9 % of its weight inside its window (other weights, odd content).
* **bfloat16 convolutions and matrix products** where the CPU has native bfloat16 (AVX-512 BF16): the
  Conv2d and Linear layers hold bfloat16 copies of their weights (convolutions in channels_last, which
  oneDNN runs fastest) and run under autocast; everything that reads parameters directly (modulation,
  positional embeddings, the token flow, the attention logits) stays float32. Without native bfloat16 the
  path keeps float32 and only uses local attention and channels_last.

* **The token decoder's modulated convolutions as one convolution of the batch** (``ModulatedConv2d.fused =
  False``): the style scales the input and the demodulation the output, instead of a grouped convolution
  with a kernel per frame; the same function, rounded differently, and the token decoder about a third
  faster (batch 8, one thread: about 7 ms a frame down to about 5). With bfloat16, the frame decoder also
  takes its inputs already in bfloat16 and channels_last (identical output; a whole decode 0.96x the CPU
  time, farm-bench A/B beside a training job).

What the decoder shows moves by far less than the stated tolerance (0.05 dB PSNR against the plain path;
tests/test_fast.py checks it, and ``benchmarks/speed.py`` reports it on real clips). Token refinement and
decoder adaptation keep the plain float32 model (they need gradients); the flow module is shared with it,
so decoder offsets (ADPT) apply to both.
"""
from __future__ import annotations

import copy
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from .model import IMF
from .model.alignment import CrossAttentionAlign
from .model.layers import ModulatedConv2d
from .model.imf import Reference

SYNTHESIS = ("fast", "exact")
#: Neighbourhood radius of the local attention at 1/8, in grid cells (5x5 keys per query).
LOCAL_RADIUS = 2
#: A reference whose own frame puts less than this share of its attention inside the window is given
#: full attention instead.
LOCAL_MASS = 0.999


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (oneDNN with AVX-512 BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class _Local:
    """Attention weights over each query's window: (B, N, K), K = (2r+1)^2 offsets."""

    def __init__(self, weights: torch.Tensor):
        self.weights = weights


class LocalAlign(nn.Module):
    """A CrossAttentionAlign whose queries attend only the (2r+1)^2 reference positions around their own
    (same parameters, shared with the wrapped module)."""

    def __init__(self, base: CrossAttentionAlign, grid: int, radius: int = LOCAL_RADIUS):
        super().__init__()
        self.base, self.grid, self.radius = base, grid, radius
        g, r = grid, radius
        ys, xs = torch.meshgrid(torch.arange(g), torch.arange(g), indexing="ij")
        ys, xs = ys.flatten(), xs.flatten()
        self.offsets = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)]
        # per offset, where its neighbour is inside the grid: (output rows, cols), (neighbour rows, cols)
        self.windows = [((slice(max(0, -dy), g - max(0, dy)), slice(max(0, -dx), g - max(0, dx))),
                         (slice(max(0, dy), g + min(0, dy)), slice(max(0, dx), g + min(0, dx))))
                        for dy, dx in self.offsets]
        ny = torch.stack([ys + dy for dy, _ in self.offsets], 1)  # (N, K)
        nx = torch.stack([xs + dx for _, dx in self.offsets], 1)
        valid = (ny >= 0) & (ny < g) & (nx >= 0) & (nx < g)
        self.index = (ny.clamp(0, g - 1) * g + nx.clamp(0, g - 1))
        self.invalid = ~valid
        self._cache: tuple | None = None  # (keys tensor, neighbour keys, their bias, or None: full attention)

    def keys(self, m_ref: torch.Tensor) -> torch.Tensor:
        return self.base.keys(m_ref)

    def _neighbours(self, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Neighbour keys (N, D, K), their bias (N, K) and the window as a mask over all keys (N, N) of a
        reference's keys (1, N, D); cached for the keys tensor last seen (one reference serves many batches;
        read once, as decoder workers share the cache)."""
        cached = self._cache
        if cached is not None and cached[0] is keys:
            return cached[1]
        k = keys[0].float()
        index, invalid = self.index.to(k.device), self.invalid.to(k.device)
        kn = k[index]  # (N, K, D)
        bias = (-0.5 * kn.pow(2).sum(-1)).masked_fill(invalid, float("-inf"))
        inside = torch.zeros(k.shape[0], k.shape[0], dtype=torch.bool, device=k.device)
        rows = torch.arange(k.shape[0], device=k.device)[:, None].expand_as(index)
        inside[rows[~invalid], index[~invalid]] = True
        out = (kn.permute(0, 2, 1).contiguous(), bias, inside)
        self._cache = (keys, out)
        return out

    def attention(self, m_cur: torch.Tensor, keys: torch.Tensor):
        """Local weights, unless the batch's first frame puts less than LOCAL_MASS of some query's full
        attention inside its window: then the full attention (one full row set per batch checks it)."""
        if keys.shape[0] != 1:
            return self.base.attention(m_cur, keys)  # a batch of references (training): the plain path
        kn, bias, inside = self._neighbours(keys)
        with torch.autocast(device_type=m_cur.device.type, enabled=False):
            q = self.base.q(m_cur.float().flatten(2).transpose(1, 2)) + self.base.pos_q  # (B, N, D)
            k0 = keys[0].float()
            full = torch.softmax(q[0] @ k0.T - 0.5 * k0.pow(2).sum(-1)[None], dim=-1)  # (N, N)
            if float((full * inside).sum(-1).min()) < LOCAL_MASS:
                return self.base.attention(m_cur, keys)
            logits = torch.einsum("bnd,ndk->bnk", q, kn) + bias
            return _Local(torch.softmax(logits, dim=-1))

    def aligned(self, attn, values: torch.Tensor) -> torch.Tensor:
        """Each query's weighted sum of its window's values (B, N, C), as shifted multiply-adds over the grid
        held channels-last. An offset adds only where its neighbour is inside the grid (outside, its weight
        is exactly 0), so the values need no padded copy. One frame at a time, so that the sum (2 MB at
        32x32x480) stays in cache over its 25 passes: a third of the time of a padded batch at once, with
        the same additions in the same order."""
        if not isinstance(attn, _Local):
            return self.base.aligned(attn, values)
        g = self.grid
        b, n, c = values.shape
        with torch.autocast(device_type=values.device.type, enabled=False):
            v = values.float().reshape(b, g, g, c).contiguous()  # positions x channels, as the sums run
            w = attn.weights.reshape(b, g, g, -1)
            out = torch.zeros(b, g, g, c, device=values.device)
            for vi, wi, oi in zip(v, w, out):
                for j, ((ys, xs), (ny, nx)) in enumerate(self.windows):
                    oi[ys, xs].addcmul_(vi[ny, nx], wi[ys, xs, j:j + 1])
            return out.reshape(b, n, c)


class _Bf16Inputs(nn.Module):
    """The frame decoder given its inputs in bfloat16 and channels_last, as its convolutions take them under
    autocast anyway: the concatenations of upsampled maps with float32 skips no longer promote and convert
    back at every scale. The same values reach every convolution, so the output is identical."""

    def __init__(self, decoder: nn.Module):
        super().__init__()
        self.decoder = decoder

    def forward(self, feats: list[torch.Tensor], m8: torch.Tensor, m16: torch.Tensor):
        def cast(t: torch.Tensor) -> torch.Tensor:
            return t.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
        return self.decoder([cast(f) for f in feats], cast(m8), cast(m16))


class FastSynthesis:
    """Synthesis with the fast path (see the module's doc): ``synthesize(tokens, ref)`` as IMF's, from a
    Reference the plain model computed (references are computed once per keyframe, in float32)."""

    def __init__(self, model: IMF, bf16: bool | None = None, local: bool = True):
        self.plain = model
        self.bf16 = native_bf16() if bf16 is None else bf16
        fast = copy.deepcopy(model).eval()
        if model.flow is not None:
            fast.flow = model.flow  # shared: decoder offsets set on the plain model apply here too
        if local:
            fast.align8 = LocalAlign(fast.align8, model.cfg.size // 8)
        for name, mod in fast.named_modules():
            if name.startswith(("flow", "align")):
                continue  # read in float32 with autocast off
            if isinstance(mod, nn.Conv2d):
                mod.to(memory_format=torch.channels_last)
                if self.bf16:
                    mod.to(torch.bfloat16)
            elif isinstance(mod, nn.Linear) and self.bf16:
                mod.to(torch.bfloat16)
            elif isinstance(mod, ModulatedConv2d):
                mod.fused = False  # one batched convolution instead of a grouped one per frame
        if self.bf16:
            fast.frame_decoder = _Bf16Inputs(fast.frame_decoder)
        for p in fast.parameters():
            p.requires_grad_(False)
        self.model = fast
        self.cfg = model.cfg

    def _ctx(self, device: torch.device):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16) if self.bf16 else nullcontext()

    @torch.no_grad()
    def synthesize(self, tokens: torch.Tensor, ref: Reference) -> torch.Tensor:
        with self._ctx(tokens.device):
            return self.model.synthesize(tokens, ref).float()

    @torch.no_grad()
    def encode_tokens(self, frames: torch.Tensor) -> torch.Tensor:
        """E_T in float32, the plain model's. In bfloat16 it took about half the time, but at --bitrate 5k
        its rounding led the rate control to 0.15 dB less on the eval clips (liveportrait-driving-d12 0.56
        dB less), where random errors of the same size gave that clip -0.03 to +0.16 dB."""
        return self.plain.encode_tokens(frames)


def synthesis_for(model: IMF, mode: str, device: torch.device):
    """What synthesises frames without gradients: the model itself (``exact``) or its fast path (``fast``,
    on CPU; on other devices the plain model)."""
    if mode not in SYNTHESIS:
        raise ValueError(f"unknown synthesis {mode!r}: use {', '.join(SYNTHESIS)}")
    if mode == "exact" or device.type != "cpu":
        return model
    return FastSynthesis(model)
