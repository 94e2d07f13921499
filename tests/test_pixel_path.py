"""The pixel path (the decoder can show the reference image, warped by the token flow, through D_F's mask),
and the training options that came with it: even clip sampling, bf16 autocast and channels-last steps."""
import dataclasses

import numpy as np
import torch

from imfcodec.codec import DecodeOptions, EncodeOptions, decode_file, encode_file, repeat_keyframes
from imfcodec.model import IMF, TINY
from imfcodec.model.weights import load_weights, save_weights
from imfcodec.train.data import FrameCache, PairSampler, find_videos
from imfcodec.train.loop import TrainOptions, Trainer
from tests.conftest import make_clip

PIXEL = dataclasses.replace(TINY, pixel_path=True)


def test_fresh_pixel_path_reproduces_the_reference_at_zero_motion():
    torch.manual_seed(0)
    m = IMF(PIXEL).eval()
    ref = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        cache = m.reference(ref)
        out = m.synthesize(cache.token.expand(3, -1), cache)
    assert torch.equal(out, ref.expand(3, -1, -1, -1))


def test_mask_blends_generated_and_warped_reference():
    torch.manual_seed(0)
    m = IMF(PIXEL).eval()
    plain = IMF(TINY).eval()
    plain.load_state_dict({k: v for k, v in m.state_dict().items() if not k.startswith("frame_decoder.mask")})
    torch.nn.init.constant_(m.frame_decoder.mask.bias, 0.0)  # mask 0: only what D_F generates
    ref, cur = torch.rand(1, 3, 64, 64), torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(m(ref.expand(2, -1, -1, -1), cur), plain(ref.expand(2, -1, -1, -1), cur), atol=1e-6)
        torch.nn.init.constant_(m.frame_decoder.mask.bias, 0.25)
        mixed = m.synthesize(m.encode_tokens(cur), m.reference(ref))
        gen = plain.synthesize(plain.encode_tokens(cur), plain.reference(ref))
    assert torch.allclose(mixed, 0.25 * ref + 0.75 * gen, atol=1e-5)


def test_weights_record_the_pixel_path(tmp_path):
    torch.manual_seed(0)
    path = str(tmp_path / "p.safetensors")
    save_weights(IMF(PIXEL), path)
    lm = load_weights(path)
    assert lm.model.cfg.pixel_path and lm.model.frame_decoder.mask is not None
    save_weights(IMF(TINY), path)
    assert load_weights(path).model.frame_decoder.mask is None  # weights without the path load as before


def test_codec_with_an_untrained_pixel_path_shows_each_keyframe(tmp_path):
    """With a fresh flow and mask 1, every frame the decoder shows is its segment's decoded keyframe."""
    torch.manual_seed(0)
    weights = str(tmp_path / "p.safetensors")
    save_weights(IMF(PIXEL), weights)
    clip = make_clip(tmp_path / "c.mp4", frames=10)
    out = tmp_path / "c.imf"
    encode_file(str(clip), str(out), EncodeOptions(weights=weights, allow_untrained=True, chunk_frames=4,
                                                   keyframe_interval=5, keyframe_psnr=0, adapt_steps=0,
                                                   keyframe_candidates=1))
    frames = decode_file(str(out), None, DecodeOptions(weights=weights, allow_untrained=True),
                         keep_frames=True).frames_rgb
    floor = repeat_keyframes(str(out))
    assert len(frames) == 10
    assert all(np.abs(f.astype(int) - g.astype(int)).max() <= 1 for f, g in zip(frames, floor))


def _data(tmp_path):
    tmp_path.mkdir()
    make_clip(tmp_path / "long.mp4", frames=12)
    make_clip(tmp_path / "short.mp4", frames=3)
    return tmp_path


def _opts(data, out, **kw):
    return TrainOptions(data=[str(data)], out=str(out), config=PIXEL, steps=1, batch=2, ae_steps=0,
                        gan_start=10**9, log_every=1, cache_dir=str(out / "cache"), **kw)


def test_even_clips_draw_every_clip_equally(tmp_path):
    data = _data(tmp_path / "d")
    cache = FrameCache(find_videos([str(data)]), 64, str(tmp_path / "cache"))
    assert np.allclose(PairSampler(cache, even=True).p, [0.5, 0.5])
    assert np.allclose(PairSampler(cache).p, [12 / 15, 3 / 15])


def test_init_without_the_path_keeps_the_rest_and_one_step_trains_the_mask(tmp_path):
    data = _data(tmp_path / "d")
    torch.manual_seed(1)
    plain = IMF(TINY)
    init = str(tmp_path / "plain.safetensors")
    save_weights(plain, init, steps=7)
    stored = load_weights(init).model.state_dict()
    t = Trainer(_opts(data, tmp_path / "run", init=init, even_clips=True))
    own = t.G.state_dict()
    assert t.base_steps == 7 and t.init_kept == (len(stored), len(own))
    assert all(torch.equal(own[k], v) for k, v in stored.items())
    mask_before = t.G.frame_decoder.mask.weight.detach().clone()
    st = t.train_step()
    assert st["skipped"] == 0 and np.isfinite([st["l1"], st["perc"]]).all()
    assert not torch.equal(t.G.frame_decoder.mask.weight, mask_before)


def test_pixel_path_added_to_trained_weights_starts_as_they_decode(tmp_path):
    """--init from weights without the path starts the mask at 0: the fine-tune begins from their output."""
    data = _data(tmp_path / "d")
    torch.manual_seed(2)
    plain = IMF(TINY).eval()
    init = str(tmp_path / "plain.safetensors")
    save_weights(plain, init)
    plain = load_weights(init).model.eval()
    g = Trainer(_opts(data, tmp_path / "run", init=init)).G.eval()
    ref, cur = torch.rand(1, 3, 64, 64), torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(g(ref.expand(2, -1, -1, -1), cur), plain(ref.expand(2, -1, -1, -1), cur))


def test_decoder_only_training_moves_only_the_frame_decoder(tmp_path):
    data = _data(tmp_path / "d")
    torch.manual_seed(3)
    t = Trainer(_opts(data, tmp_path / "run", train_part="decoder"))
    before = {k: v.clone() for k, v in t.G.state_dict().items()}
    st = t.train_step()
    assert st["skipped"] == 0 and np.isfinite([st["l1"], st["perc"]]).all()
    changed = {k.split(".")[0] for k, v in t.G.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"frame_decoder"}
    assert not torch.equal(t.G.frame_decoder.mask.weight, before["frame_decoder.mask.weight"])


def test_bf16_channels_last_step_is_finite_and_trains(tmp_path):
    data = _data(tmp_path / "d")
    torch.manual_seed(0)
    opts = dataclasses.replace(_opts(data, tmp_path / "run", bf16=True, channels_last=True), config=TINY)
    t = Trainer(opts)
    before = {k: v.clone() for k, v in t.G.state_dict().items()}
    st = t.train_step()
    assert st["skipped"] == 0 and np.isfinite([st["l1"], st["perc"]]).all()
    changed = [k for k, v in t.G.state_dict().items() if not torch.equal(v, before[k])]
    assert len(changed) > 0.5 * len(before)
    assert all(p.dtype == torch.float32 for p in t.G.parameters())  # autocast: weights stay float32
