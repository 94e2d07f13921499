"""Quality metrics on RGB frames in [0, 1]: PSNR over RGB, PSNR over Y (BT.601), and MS-SSIM.

MS-SSIM follows Wang et al. (2003): 11-tap Gaussian window (sigma 1.5), five scales with the standard
weights; images too small for five scales use fewer (weights renormalised), as some tools do.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

MSSSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _as_tensor(x) -> torch.Tensor:
    """Accepts (T, 3, H, W) float in [0, 1] or (T, H, W, 3) / (H, W, 3) uint8 arrays."""
    if isinstance(x, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(x))
        if t.dtype == torch.uint8:
            t = t.float() / 255
        if t.ndim == 3:
            t = t[None]
        return t.permute(0, 3, 1, 2).double()
    return x.double() if x.ndim == 4 else x[None].double()


def mse(a, b) -> torch.Tensor:
    """Per-frame mean squared error."""
    a, b = _as_tensor(a), _as_tensor(b)
    return (a - b).pow(2).mean(dim=(1, 2, 3))


def psnr_from_mse(m: float, peak: float = 1.0) -> float:
    return float("inf") if m <= 0 else 10 * math.log10(peak * peak / m)


def psnr_rgb(a, b) -> np.ndarray:
    """Per-frame PSNR over the RGB channels, in dB."""
    return np.array([psnr_from_mse(float(m)) for m in mse(a, b)])


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """BT.601 limited-range luma in [16/255, 235/255] from RGB in [0, 1] (what yuv420p stores)."""
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    return (16 + 65.481 * r + 128.553 * g + 24.966 * b) / 255


def psnr_y(a, b) -> np.ndarray:
    """Per-frame PSNR over luma computed from RGB (peak 255)."""
    ya, yb = rgb_to_y(_as_tensor(a)), rgb_to_y(_as_tensor(b))
    return np.array([psnr_from_mse(float(m)) for m in (ya - yb).pow(2).mean(dim=(1, 2))])


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-x * x / (2 * sigma * sigma))
    return g / g.sum()


def _band(n: int, win: torch.Tensor) -> torch.Tensor:
    """(n, n - k + 1) matrix whose columns are the window at every valid offset: a 1-D valid filter as a
    matrix product, which BLAS runs far faster than a depthwise convolution with a long thin kernel."""
    k = win.shape[0]
    m = torch.zeros(n, n - k + 1, dtype=win.dtype)
    for j in range(n - k + 1):
        m[j:j + k, j] = win
    return m


#: Elements the shifted blur filters per operation: about 1 MB of float32, so that its buffers stay in cache.
BLUR_CHUNK = 1 << 18


def _shifted_blur(stats: torch.Tensor, win: torch.Tensor) -> torch.Tensor:
    """The valid separable filter of the last two dimensions without gradients, as shifted multiply-adds
    into buffers that stay in cache: a few images at a time at full size, all of them at once at the
    coarser scales, where one image per operation would leave the time to Python. At 256x256 about a
    quarter of the band matrices' time (they multiply by mostly zeros); the same sums to float rounding,
    and the same sums whatever the grouping (each element sees the same operations in the same order)."""
    taps = win.tolist()
    k, (h, w) = len(taps), stats.shape[-2:]
    flat = stats.reshape(-1, h, w)
    out = torch.empty(flat.shape[0], h - k + 1, w - k + 1, dtype=stats.dtype, device=stats.device)
    step = max(1, BLUR_CHUNK // (h * w))
    rows = torch.empty(min(step, len(flat)), h, w - k + 1, dtype=stats.dtype, device=stats.device)
    for s in range(0, len(flat), step):
        img, o = flat[s:s + step], out[s:s + step]
        r = rows[:len(img)]
        torch.mul(img[..., :w - k + 1], taps[0], out=r)
        for i in range(1, k):
            r.add_(img[..., i:i + w - k + 1], alpha=taps[i])
        torch.mul(r[:, :h - k + 1], taps[0], out=o)
        for i in range(1, k):
            o.add_(r[:, i:i + h - k + 1], alpha=taps[i])
    return out.reshape(*stats.shape[:-2], h - k + 1, w - k + 1)


def ssim_maps(x: torch.Tensor, y: torch.Tensor, win: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SSIM and contrast-structure maps (valid filtering with a separable window, as the reference code)."""
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    stats = torch.stack([x, y, x * x, y * y, x * y])  # one pass of the blur for all five
    if stats.requires_grad:
        bw = _band(x.shape[-1], win).to(x)
        bh = _band(x.shape[-2], win).to(x).t()
        mx, my, exx, eyy, exy = bh @ (stats @ bw)
    else:
        mx, my, exx, eyy, exy = _shifted_blur(stats, win.to(x.dtype))
    sxx = exx - mx * mx
    syy = eyy - my * my
    sxy = exy - mx * my
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    return (2 * mx * my + c1) / (mx * mx + my * my + c1) * cs, cs


def msssim_t(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-frame MS-SSIM over RGB of (B, 3, H, W) tensors in [0, 1], differentiable (token refinement uses it)."""
    win = gaussian_window()
    side = min(x.shape[-2:])
    scales = 5
    while scales > 1 and side < (win.shape[0] - 1) * 2 ** (scales - 1) + 1:
        scales -= 1
    if side < win.shape[0]:
        win = gaussian_window(max(3, side // 2 * 2 - 1))
    weights = torch.tensor(MSSSIM_WEIGHTS[:scales], dtype=torch.float64)
    weights = (weights / weights.sum()).to(x.device)
    vals = []
    for i in range(scales):
        ssim, cs = ssim_maps(x, y, win)
        vals.append((ssim if i == scales - 1 else cs).mean(dim=(1, 2, 3)))
        if i < scales - 1:
            x = F.avg_pool2d(x, 2, ceil_mode=True)
            y = F.avg_pool2d(y, 2, ceil_mode=True)
    v = torch.stack(vals, dim=1).double().clamp_min(0)
    return torch.prod(v ** weights, dim=1)


def gmsd(a, b) -> np.ndarray:
    """Per-frame gradient magnitude similarity deviation (Xue et al., 2014), lower is better: the spread of
    the per-pixel similarity of the two frames' luma gradient magnitudes (Prewitt, at half resolution).
    Blur and smeared edges raise it where PSNR barely moves, so it tells a sharper decoder from a blurred one
    without learned weights (LPIPS needs a backbone this machine cannot download)."""
    def grad_mag(x: torch.Tensor) -> torch.Tensor:
        y = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None] * 255
        y = F.avg_pool2d(y, 2)
        k = torch.tensor([[1.0, 0.0, -1.0]] * 3, dtype=y.dtype) / 3
        g = F.conv2d(y, torch.stack([k, k.t()])[:, None], padding=1)
        return g.pow(2).sum(1).sqrt()

    ma, mb = grad_mag(_as_tensor(a)), grad_mag(_as_tensor(b))
    t = 170.0
    gms = (2 * ma * mb + t) / (ma * ma + mb * mb + t)
    return gms.flatten(1).std(dim=1, unbiased=False).numpy()


def msssim(a, b) -> np.ndarray:
    """Per-frame MS-SSIM over RGB."""
    # float32: 10x faster convolutions, 1e-6 agreement
    return msssim_t(_as_tensor(a).float(), _as_tensor(b).float()).detach().numpy()
