"""Training pipeline on tiny synthetic data: cache, pairs, one step, resume, --init, 2-process DDP."""
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from imfcodec.model import TINY
from imfcodec.model.weights import load_weights
from imfcodec.train.data import FrameCache, PairSampler, code_references, find_videos
from imfcodec.train.loop import TrainOptions, Trainer
from tests.conftest import make_clip


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    make_clip(d / "a.mp4", frames=6)
    make_clip(d / "b.mkv", frames=5, w=64, h=96)
    (d / "readme.txt").write_text("not a video")
    return d


def opts(data_dir, out, **kw):
    base = dict(data=[str(data_dir)], out=str(out), config=TINY, steps=2, batch=2, ae_steps=1, gan_start=1,
                eval_data=[str(data_dir)], eval_every=2, eval_frames=4, eval_stride=1, log_every=1,
                cache_dir=str(out / "cache"))
    base.update(kw)
    return TrainOptions(**base)


def test_cache_and_pairs(data_dir, tmp_path):
    vids = find_videos([str(data_dir)])
    assert [os.path.basename(v) for v in vids] == ["a.mp4", "b.mkv"]
    cache = FrameCache(vids, 64, str(tmp_path))
    assert len(cache) == 11 and cache.frames.shape == (11, 64, 64, 3) and cache.frames.dtype == np.uint8
    again = FrameCache(vids, 64, str(tmp_path))  # reused, not rebuilt
    assert np.array_equal(np.asarray(again.frames), np.asarray(cache.frames))
    s = PairSampler(cache, seed=0)
    ref, cur = s.batch(4, same_prob=1.0)
    assert ref.shape == cur.shape == (4, 3, 64, 64) and 0 <= ref.min() and ref.max() <= 1
    assert torch.equal(ref, cur)  # same frame, same augmentation on both
    ref, cur = s.batch(8)
    assert not torch.equal(ref, cur)


def test_coded_references_are_the_frames_as_a_keyframe_coder_gives_them(data_dir, tmp_path):
    """--coded-refs: a drawn share of references is replaced by its intra-coded, decoded self (close to it,
    not equal); the rest and the current frames are untouched; the same seed draws the same."""
    cache = FrameCache(find_videos([str(data_dir)]), 64, str(tmp_path))
    ref, _ = PairSampler(cache, seed=0).batch(6)
    assert torch.equal(code_references(ref, np.random.default_rng(0), 0.0), ref)
    coded = code_references(ref, np.random.default_rng(1), 1.0)
    assert coded.shape == ref.shape and coded.dtype == ref.dtype and 0 <= coded.min() and coded.max() <= 1
    psnr = -10 * torch.log10(((coded - ref) ** 2).mean((1, 2, 3)))
    assert bool((psnr > 20).all()) and bool((psnr < 60).all()), psnr
    assert torch.equal(code_references(ref, np.random.default_rng(1), 1.0), coded)
    half = code_references(ref, np.random.default_rng(2), 0.5)
    kept = [torch.equal(a, b) for a, b in zip(half, ref)]
    assert 0 < sum(kept) < len(ref)
    t = Trainer(opts(data_dir, tmp_path / "run", coded_refs=1.0))
    st = t.train_step()
    assert st["skipped"] == 0 and np.isfinite([st["l1"], st["perc"]]).all()


def test_coded_evaluation_starts_from_the_first_frame_as_decoded(data_dir, tmp_path):
    """--eval-coded: each eval clip's reference (its first frame) is the default keyframe's decoding of it;
    the frames scored stay as they are."""
    clean = Trainer(opts(data_dir, tmp_path / "a")).eval_clips
    coded = Trainer(opts(data_dir, tmp_path / "b", eval_coded=True)).eval_clips
    for a, b in zip(clean, coded, strict=True):
        assert torch.equal(a[1:], b[1:]) and not torch.equal(a[0], b[0])
        assert -10 * torch.log10(((a[0] - b[0]) ** 2).mean()) > 20


def test_one_step_changes_weights_and_losses_finite(data_dir, tmp_path):
    torch.manual_seed(0)
    t = Trainer(opts(data_dir, tmp_path))
    before = {k: v.clone() for k, v in t.G.state_dict().items()}
    st = t.train_step()
    assert st["skipped"] == 0 and np.isfinite([st["l1"], st["perc"], st["tok"]]).all()
    changed = [k for k, v in t.G.state_dict().items() if not torch.equal(v, before[k])]
    assert len(changed) > 0.5 * len(before)


def test_discriminator_warmup_trains_d_alone_at_its_own_rate(data_dir, tmp_path):
    """--d-warmup: the first steps from --gan-start move D and leave G (and its EMA) as they were; --d-lr
    sets D's rate apart from G's; after the warm-up both learn."""
    torch.manual_seed(0)
    t = Trainer(opts(data_dir, tmp_path, ae_steps=0, gan_start=0, d_warmup=2, lr=1e-4, d_lr=3e-4))
    assert [g["lr"] for g in t.opt_d.param_groups] == [3e-4] and [g["lr"] for g in t.opt_g.param_groups] == [1e-4]
    g0 = {k: v.clone() for k, v in t.G.state_dict().items()}
    e0 = {k: v.clone() for k, v in t.ema.state_dict().items()}
    d0 = {k: v.clone() for k, v in t.D.state_dict().items()}
    for t.step in range(2):
        st = t.train_step()
        assert st["skipped"] == 0 and st["d"] > 0 and st["adv"] == 0
    assert all(torch.equal(v, g0[k]) for k, v in t.G.state_dict().items())
    assert all(torch.equal(v, e0[k]) for k, v in t.ema.state_dict().items())
    assert any(not torch.equal(v, d0[k]) for k, v in t.D.state_dict().items())
    t.step = 2
    st = t.train_step()
    assert st["skipped"] == 0 and st["adv"] != 0 and st["d"] > 0
    assert any(not torch.equal(v, g0[k]) for k, v in t.G.state_dict().items())


def test_distortion_loss_with_cosine_decay(data_dir, tmp_path):
    """--loss distortion trains on the refinement's loss; --lr-decay cosine halves the rate midway."""
    torch.manual_seed(0)
    t = Trainer(opts(data_dir, tmp_path, steps=4, gan_start=100, loss="distortion", lr_decay="cosine", lr=1e-3))
    before = {k: v.clone() for k, v in t.G.state_dict().items()}
    rates = []
    for t.step in range(4):
        st = t.train_step()
        assert st["skipped"] == 0 and 0 < st["perc"] < 51  # 50 MSE + (1 - MS-SSIM) of frames in [0, 1]
        rates.append([g["lr"] for g in t.opt_g.param_groups])
    assert rates[0] == pytest.approx([1e-3]) and rates[2] == pytest.approx([5e-4])
    assert rates[3][0] < rates[2][0]
    assert any(not torch.equal(v, before[k]) for k, v in t.G.state_dict().items())
    path = tmp_path / "w.safetensors"
    t.export(str(path))
    assert "MS-SSIM" in load_weights(str(path)).meta["losses"]


def test_fit_resume_and_init(data_dir, tmp_path):
    out = tmp_path / "run"
    t = Trainer(opts(data_dir, out, steps=2))
    t.fit()
    assert (out / "checkpoint.pt").exists() and (out / "best.safetensors").exists()
    assert (out / "eval.csv").read_text().count("\n") >= 2  # header, step 0, step 2
    assert "static_psnr" in (out / "eval.csv").read_text().splitlines()[0]
    g = {k: v.clone() for k, v in t.G.state_dict().items()}

    r = Trainer(opts(data_dir, out, steps=3, resume=True))
    assert r.step == 2
    assert all(torch.equal(v, g[k]) for k, v in r.G.state_dict().items())
    assert len(r.opt_g.state) > 0  # optimiser state came back too
    r.fit()
    assert r.step == 3

    last = load_weights(str(out / "last.safetensors"))
    assert last.meta["steps"] == 3
    i = Trainer(opts(data_dir, tmp_path / "ft", init=str(out / "last.safetensors")))
    assert i.step == 0 and len(i.opt_g.state) == 0 and i.base_steps == 3
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():  # the same function (--init only rescales the token path)
        assert torch.allclose(i.G.eval()(x[:1].expand(2, -1, -1, -1), x), last.model.eval()(x[:1].expand(2, -1, -1, -1), x),
                              atol=1e-4)
    for k, v in i.G.state_dict().items():
        if not k.startswith(("token_encoder", "token_decoder")):
            assert torch.equal(v, last.model.state_dict()[k])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, data_dir, out, q):
    import torch.distributed as dist
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        from pathlib import Path
        t = Trainer(opts(Path(data_dir), Path(out), steps=1, eval_data=[], device="cpu", seed=0))
        t.fit()
        flat = torch.cat([p.detach().flatten() for p in t.G.parameters()])
        q.put((rank, flat.numpy()))
    finally:
        dist.destroy_process_group()


def test_ddp_two_processes_gloo(data_dir, tmp_path):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_ddp_worker, args=(r, 2, port, str(data_dir), str(tmp_path), q)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict(q.get(timeout=240) for _ in procs)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    # gradients were averaged: both ranks (different data) end with identical weights
    assert np.array_equal(results[0], results[1])
    assert (tmp_path / "last.safetensors").exists()


def test_train_cli_runs_and_writes_weights(data_dir, tmp_path):
    from click.testing import CliRunner

    from cli.main import cli
    out = tmp_path / "cli-run"
    res = CliRunner().invoke(cli, ["train", "--data", str(data_dir), "--out", str(out), "--size", "64", "--dm", "16",
                                   "--steps", "2", "--batch", "1", "--ae-steps", "1", "--eval-every", "0",
                                   "--loss", "distortion", "--lr-decay", "cosine"])
    assert res.exit_code == 0, res.output
    lm = load_weights(str(out / "last.safetensors"))
    assert lm.meta["steps"] == 2 and lm.model.cfg.size == 64 and lm.model.cfg.dm == 16
    res = CliRunner().invoke(cli, ["train", "--data", str(tmp_path / "nothing"), "--out", str(out)])
    assert res.exit_code != 0


def test_token_penalty_shrinks_tokens(data_dir, tmp_path):
    """IMF_D is scale-free in the token, so only the penalty holds the token's magnitude in place."""
    norms = {}
    for weight in (0.0, 1e3):
        torch.manual_seed(0)
        t = Trainer(opts(data_dir, tmp_path / str(weight), token_l2=weight, gan_start=100, lr=1e-3))
        ref, _ = t.sampler.batch(4)
        for _ in range(3):
            st = t.train_step()
            assert np.isfinite(st["tok"])
        with torch.no_grad():
            norms[weight] = t.G.encode_tokens(ref).pow(2).mean().item()
    assert norms[1e3] < norms[0.0]


def test_block_match_finds_a_shift():
    from imfcodec.train.losses import block_match
    g = torch.Generator().manual_seed(0)
    ref = torch.nn.functional.interpolate(torch.rand(1, 3, 16, 16, generator=g), size=64, mode="bilinear")
    cur = torch.roll(ref, shifts=(8, -4), dims=(2, 3))  # content moves 2 cells down and 1 cell left (grid 16)
    idx = block_match(ref, cur, grid=16, radius=3)[0]
    cells = torch.arange(256)
    dy, dx = idx // 16 - cells // 16, idx % 16 - cells % 16
    inner = ((cells // 16 >= 3) & (cells // 16 < 13) & (cells % 16 >= 3) & (cells % 16 < 13))
    assert (dy[inner] == -2).float().mean() > 0.9 and (dx[inner] == 1).float().mean() > 0.9
    same = block_match(ref, ref, grid=16, radius=3)[0]
    assert torch.equal(same, cells)  # nothing moved: every cell maps onto itself


def test_static_psnr_equals_psnr_when_frames_do_not_move():
    from imfcodec.model import IMF
    from imfcodec.train.loop import evaluate
    torch.manual_seed(0)
    still = torch.rand(1, 3, 64, 64).expand(5, -1, -1, -1)  # every frame is the reference
    r = evaluate(IMF(TINY), [still, torch.rand(4, 3, 64, 64)], torch.device("cpu"))
    assert set(r) == {"psnr", "msssim", "static_psnr", "floor_psnr", "floor_msssim"}
    r1 = evaluate(IMF(TINY), [still], torch.device("cpu"))
    assert abs(r1["static_psnr"] - r1["psnr"]) < 1e-4


def test_log_with_other_columns_keeps_the_old_log(tmp_path):
    import types
    t = types.SimpleNamespace(rank=0, opt=types.SimpleNamespace(out=str(tmp_path)))
    Trainer._log(t, "eval.csv", {"step": 1, "psnr": 20.0})
    Trainer._log(t, "eval.csv", {"step": 2, "psnr": 21.0})
    Trainer._log(t, "eval.csv", {"step": 3, "psnr": 22.0, "static_psnr": 20.5})
    assert (tmp_path / "eval-old.csv").read_text().splitlines() == ["step,psnr", "1,20.0", "2,21.0"]
    assert (tmp_path / "eval.csv").read_text().splitlines() == ["step,psnr,static_psnr", "3,22.0,20.5"]


def test_flow_warmup_trains_only_token_encoder_and_flow(data_dir, tmp_path):
    torch.manual_seed(0)
    t = Trainer(opts(data_dir, tmp_path, ae_steps=0, flow_steps=1, motion_batch=2))
    before = {k: v.clone() for k, v in t.G.state_dict().items()}
    st = t.train_step()
    assert st["skipped"] == 0 and np.isfinite([st["perc"], st["sup"]]).all()
    changed = {k.split(".")[0] for k, v in t.G.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"token_encoder", "flow"}


def test_block_flow_is_the_block_match_as_normalised_flow():
    from imfcodec.train.losses import block_flow
    g = torch.Generator().manual_seed(0)
    ref = torch.nn.functional.interpolate(torch.rand(1, 3, 16, 16, generator=g), size=64, mode="bilinear")
    cur = torch.roll(ref, shifts=(8, -4), dims=(2, 3))  # current point (x, y) was at (x + 1, y - 2) cells
    f = block_flow(ref, cur, grid=16, radius=3)[0, :, 3:13, 3:13]
    assert ((f[0] - 2 / 16).abs() < 1e-6).float().mean() > 0.9
    assert ((f[1] + 4 / 16).abs() < 1e-6).float().mean() > 0.9


def test_init_loads_the_weights_as_they_are(data_dir, tmp_path):
    """--init starts from the weights exactly; of another config it keeps what fits, and refuses weights
    that share too little."""
    import dataclasses
    from imfcodec.model import IMF
    from imfcodec.model.weights import save_weights
    torch.manual_seed(0)
    path = str(tmp_path / "init.safetensors")
    save_weights(IMF(TINY).eval(), path, steps=7)
    stored = load_weights(path).model.state_dict()
    kept = Trainer(opts(data_dir, tmp_path / "kept", init=path))
    assert kept.base_steps == 7 and all(torch.equal(v, stored[k]) for k, v in kept.G.state_dict().items())
    other = str(tmp_path / "other.safetensors")
    save_weights(IMF(dataclasses.replace(TINY, flow_grid=0)).eval(), other, steps=7)
    partial = Trainer(opts(data_dir, tmp_path / "partial", init=other)).G.state_dict()
    no_flow = load_weights(other).model.state_dict()
    assert all(torch.equal(v, partial[k]) for k, v in no_flow.items())  # all it has is kept; the flow is fresh
    assert any(k.startswith("flow.") for k in partial) and not any(k.startswith("flow.") for k in no_flow)
    save_weights(IMF(dataclasses.replace(TINY, widths=(6, 10, 18, 26), token_width=12, style_dim=20,
                                         motion_widths=(12, 12), attn_dim=12)).eval(), other, steps=7)
    with pytest.raises(ValueError, match="--init weights have config"):
        Trainer(opts(data_dir, tmp_path / "other", init=other))


def test_train_cli_warns_of_emulated_bf16(data_dir, tmp_path, monkeypatch):
    """On a CPU without native bfloat16, --bf16 is emulated and slow: the command says so in one line."""
    from click.testing import CliRunner

    import imfcodec.fast
    from cli.main import cli
    monkeypatch.setattr(imfcodec.fast, "native_bf16", lambda: False)
    res = CliRunner().invoke(cli, ["train", "--data", str(data_dir), "--out", str(tmp_path / "r"), "--size", "64",
                                   "--dm", "16", "--steps", "1", "--batch", "1", "--eval-every", "0", "--bf16",
                                   "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "no native bfloat16" in res.output
