"""Quality metrics: MS-SSIM's two filtering paths (with and without gradients) agree with each other and
with a plain 2-D convolution; identical frames score 1; PSNR is 10 log10(1 / MSE); GMSD rises with blur."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from imfcodec.metrics import gaussian_window, gmsd, msssim, msssim_t, psnr_rgb, ssim_maps


def _conv_ssim(x: torch.Tensor, y: torch.Tensor, win: torch.Tensor) -> torch.Tensor:
    """SSIM map by a depthwise 2-D convolution with the outer product of the window (float64)."""
    k = (win[:, None] * win[None]).to(x)[None, None].expand(x.shape[1], 1, -1, -1)
    blur = lambda t: F.conv2d(t, k, groups=x.shape[1])  # noqa: E731
    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    return (2 * mx * my + c1) * (2 * sxy + c2) / ((mx * mx + my * my + c1) * (sxx + syy + c2))


@pytest.mark.parametrize("size", [256, 40])
def test_ssim_maps_agree_with_a_plain_convolution_with_and_without_gradients(size):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, size, size, generator=g)
    y = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    win = gaussian_window()
    want = _conv_ssim(x.double(), y.double(), win)
    plain, _ = ssim_maps(x, y, win)  # no gradients: shifted sums
    xg = x.clone().requires_grad_(True)
    graded, _ = ssim_maps(xg, y, win)  # with gradients: band matrices
    assert torch.allclose(plain.double(), want, atol=2e-5)
    assert torch.allclose(graded.double(), want, atol=2e-5)
    graded.mean().backward()
    assert xg.grad is not None and torch.isfinite(xg.grad).all()


@pytest.mark.parametrize("size", [256, 64, 19])
def test_shifted_blur_gives_the_same_sums_however_the_images_are_grouped(size):
    """The blur filters several images per operation: each one's sums are exactly those it gets alone, so
    the encoder's decisions (MS-SSIM) do not depend on how many frames are scored together."""
    from imfcodec.metrics import _shifted_blur
    g = torch.Generator().manual_seed(2)
    stats = torch.rand(5, 2, 3, size, size, generator=g)
    win = gaussian_window(11 if size > 11 else 7).float()
    together = _shifted_blur(stats, win)
    alone = torch.stack([_shifted_blur(img[None], win)[0] for img in stats.reshape(-1, size, size)])
    assert torch.equal(together.reshape(alone.shape), alone)


def test_msssim_of_identical_frames_is_one_and_falls_with_noise():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 3, 128, 128, generator=g)
    assert torch.allclose(msssim_t(x, x), torch.ones(3, dtype=torch.float64))
    noisy = [msssim_t((x + s * torch.randn(x.shape, generator=g)).clamp(0, 1), x) for s in (0.02, 0.1)]
    assert (noisy[0] > noisy[1]).all() and (noisy[0] < 1).all()
    with torch.enable_grad():
        xg = x.clone().requires_grad_(True)
        assert torch.allclose(msssim_t(xg, x).detach(), torch.ones(3, dtype=torch.float64), atol=1e-6)


def test_numpy_metrics_on_uint8_frames():
    a = np.full((2, 64, 64, 3), 100, np.uint8)
    b = a.copy()
    b[1] += 10
    assert np.isinf(psnr_rgb(a, b)[0]) and psnr_rgb(a, b)[1] == pytest.approx(10 * np.log10(255 ** 2 / 100))
    assert msssim(a, a) == pytest.approx([1, 1])


def test_gmsd_is_zero_for_identical_frames_and_ranks_blur_below_sharpness():
    """GMSD is 0 for a frame against itself (as tensors and as uint8 arrays) and grows with the blur."""
    g = torch.Generator().manual_seed(2)
    base = F.interpolate(torch.rand(1, 3, 32, 32, generator=g), size=128, mode="bicubic").clamp(0, 1)
    edges = (torch.rand(1, 3, 128, 128, generator=g) > 0.5).float()
    x = (0.5 * base + 0.5 * F.avg_pool2d(edges, 3, stride=1, padding=1)).clamp(0, 1)
    assert gmsd(x, x) == pytest.approx([0.0], abs=1e-9)
    blur = [F.avg_pool2d(x, k, stride=1, padding=k // 2, count_include_pad=False) for k in (3, 7)]
    assert gmsd(x, blur[0])[0] < gmsd(x, blur[1])[0]
    arr = lambda t: (t[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)  # noqa: E731
    assert gmsd(arr(x), arr(x)) == pytest.approx([0.0], abs=1e-9)
