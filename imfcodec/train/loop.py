"""The training loop: autoencoder warm-up, then motion; L1 + structural pyramid + hinge GAN; EMA;
NaN guards, gradient clipping, periodic checkpoints and evaluation, the best EMA kept by eval PSNR.
Runs in one process or under torchrun (DistributedDataParallel, gloo on CPU, nccl on CUDA)."""
from __future__ import annotations

import copy
import csv
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from ..runtime import pick_device
from ..metrics import msssim, psnr_rgb
from ..model import IMF, ModelConfig
from ..model.flow import warp
from ..model.weights import load_weights, save_weights
from ..refine import mse_msssim
from .data import FrameCache, PairSampler, as_default_keyframe, code_references, find_videos, load_clip
from .discriminator import MultiScaleD
from .losses import block_flow, feature_matching, hinge_d, hinge_g, pyramid_loss


@dataclass
class TrainOptions:
    data: list[str]
    out: str
    size: int = 256
    dm: int = 32
    steps: int = 10000
    batch: int = 4
    resume: bool = False
    init: str | None = None
    device: str = "auto"
    lr: float = 2e-4
    lr_decay: str = "constant"    # or "cosine": from lr to 0 over the run's steps (fine-tuning)
    loss: str = "perceptual"      # or "distortion": 50 MSE + (1 - MS-SSIM), what the codec is scored by
    ae_steps: int = 1000          # autoencoder warm-up: current frame = reference
    gan_start: int = 20000        # step at which the hinge GAN term starts
    d_lr: float = 0.0             # discriminator's Adam rate (0: the generator's --lr), never decayed
    d_warmup: int = 0             # steps from gan_start that train the discriminator alone on G's frames
    same_prob: float = 0.1        # share of autoencoding pairs after the warm-up
    eval_data: list[str] = field(default_factory=list)
    eval_every: int = 500
    eval_frames: int = 100
    eval_stride: int = 2
    ckpt_minutes: float = 5.0
    max_minutes: float = 0.0      # stop (and save) after this long; 0 = no limit
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    token_l2: float = 1e-4        # weight of mean(t^2): IMF_D is scale-free in t, so without it tokens drift
    motion_batch: int = 16        # pairs per flow warm-up step
    flow_steps: int = 0           # flow warm-up after the autoencoder one: E_T + token flow warp the reference
    flow_sup: float = 1.0         # weight of the pull toward block matching's flow in that warm-up
    seed: int = 0
    even_clips: bool = False      # draw every clip equally often instead of in proportion to its length
    bf16: bool = False            # bfloat16 autocast on the CPU too (always on CUDA)
    channels_last: bool = False   # channels-last memory format for G and D
    pixel_path: bool = False      # train a network with the pixel path (--init weights without it keep the rest)
    train_part: str = "all"       # or "decoder": only D_F (and its mask) learns; E_T, tokens and alignment stay
    coded_refs: float = 0.0       # share of references intra-coded and decoded first, as the codec gives them
    eval_coded: bool = False      # evaluate from each eval clip's first frame as the default keyframe decodes
    cache_dir: str = ""
    config: ModelConfig | None = None  # overrides size/dm (tests use a tiny network)
    log_every: int = 25


def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@torch.no_grad()
def evaluate(model: IMF, clips: list[torch.Tensor], device: torch.device, batch: int = 8) -> dict:
    """Mean PSNR / MS-SSIM over frames 1.. of each clip, frame 0 the reference; the repeat floor; and
    `static_psnr`, the PSNR when every frame gets the reference's token: equal to `psnr` while the motion
    path does nothing."""
    model.eval()
    ps, ms, ss, fps_, fms = [], [], [], [], []
    for frames in clips:
        ref = model.reference(frames[:1].to(device))
        target = frames[1:]
        outs, statics = [], []
        for i in range(0, len(target), batch):
            x = target[i:i + batch].to(device)
            outs.append(model.synthesize(model.encode_tokens(x), ref).clamp(0, 1).float().cpu())
            statics.append(model.synthesize(ref.token.expand(len(x), -1), ref).clamp(0, 1).float().cpu())
        out = torch.cat(outs)
        ps.append(psnr_rgb(out, target).mean())
        ms.append(msssim(out, target).mean())
        ss.append(psnr_rgb(torch.cat(statics), target).mean())
        rep = frames[:1].expand_as(target)
        fps_.append(psnr_rgb(rep, target).mean())
        fms.append(msssim(rep, target).mean())
    return {"psnr": float(np.mean(ps)), "msssim": float(np.mean(ms)), "static_psnr": float(np.mean(ss)),
            "floor_psnr": float(np.mean(fps_)), "floor_msssim": float(np.mean(fms))}


def _channels_last(*nets: torch.nn.Module) -> None:
    """Channels-last weights for every plain convolution (modulated ones hold 5-D weights and stay)."""
    for m in (m for net in nets for m in net.modules() if isinstance(m, torch.nn.Conv2d)):
        m.to(memory_format=torch.channels_last)


class Trainer:
    def __init__(self, opt: TrainOptions, progress=None):
        self.opt = opt
        self.rank, self.world = _dist_info()
        self.device = pick_device(opt.device)
        if self.device.type == "cuda" and self.world > 1:
            self.device = torch.device("cuda", self.rank % torch.cuda.device_count())
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        torch.manual_seed(opt.seed)
        self.cfg = opt.config or ModelConfig(size=opt.size, dm=opt.dm, pixel_path=opt.pixel_path)
        os.makedirs(opt.out, exist_ok=True)
        cache_dir = opt.cache_dir or os.path.join(opt.out, "cache")
        videos = find_videos(opt.data)
        if not videos:
            raise ValueError(f"no videos found under {opt.data}")
        if self.rank == 0:
            self.cache = FrameCache(videos, self.cfg.size, cache_dir, progress=progress)
        self._barrier()
        if self.rank != 0:
            self.cache = FrameCache(videos, self.cfg.size, cache_dir)
        self.sampler = PairSampler(self.cache, seed=opt.seed * 1000 + self.rank, even=opt.even_clips)
        self.eval_clips = []
        if opt.eval_data and self.rank == 0:
            ecache = FrameCache(find_videos(opt.eval_data), self.cfg.size, cache_dir)
            self.eval_clips = [load_clip(ecache, i, opt.eval_frames, opt.eval_stride)
                               for i in range(len(ecache.clips))]
            if opt.eval_coded:
                for clip in self.eval_clips:
                    clip[0] = as_default_keyframe(clip[0])

        self.G = IMF(self.cfg).to(self.device)
        if opt.init:
            init = load_weights(opt.init)
            self._load_init(init.model)
        self.ema = copy.deepcopy(self.G).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.D = MultiScaleD().to(self.device)
        if opt.channels_last:
            _channels_last(self.G, self.D)
        if opt.train_part == "decoder":
            if opt.flow_steps:
                raise ValueError("the flow warm-up trains E_T and the flow, which --train-part decoder freezes")
            for name, p in self.G.named_parameters():
                p.requires_grad_(name.startswith("frame_decoder."))
        elif opt.train_part != "all":
            raise ValueError(f"unknown train_part {opt.train_part!r}")
        trainable = [p for p in self.G.parameters() if p.requires_grad]
        self.opt_g = torch.optim.Adam(trainable, lr=opt.lr, betas=(0.5, 0.999))
        self.base_lrs = [g["lr"] for g in self.opt_g.param_groups]
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=opt.d_lr or opt.lr, betas=(0.5, 0.999))
        self.step = 0
        self.best = -math.inf
        self.base_steps = 0  # steps already in the --init weights (for the model card)
        if opt.init:
            self.base_steps = int(init.meta.get("steps", 0))
        if opt.resume and os.path.exists(self.ckpt_path):
            self._load_ckpt()
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.G_train = DDP(self.G, device_ids=ids)
            self.D_train = DDP(self.D, device_ids=ids)
        else:
            self.G_train, self.D_train = self.G, self.D

    def _load_init(self, model: IMF) -> None:
        """Load --init weights. Every tensor whose name and shape fit is kept; with another config (the
        pixel path added, another dm) the rest starts fresh. Weights that share less than half of the
        network are refused: that is not a fine-tune."""
        own = self.G.state_dict()
        state = {k: v for k, v in model.state_dict().items() if k in own and own[k].shape == v.shape}
        if model.cfg == self.cfg and len(state) != len(own):
            raise ValueError("--init weights do not fit their own config")
        if 2 * len(state) < len(own):
            raise ValueError(f"--init weights have config {model.cfg}, which shares too little with {self.cfg}")
        self.G.load_state_dict(state, strict=False)
        self.init_kept = (len(state), len(own))
        mask = self.G.frame_decoder.mask
        if mask is not None and "frame_decoder.mask.bias" not in state:
            # a pixel path added to trained weights starts shut (mask 0): the output is theirs, unchanged,
            # and the mask opens only where showing the warped reference lowers the loss
            with torch.no_grad():
                mask.bias.zero_()

    @property
    def ckpt_path(self) -> str:
        return os.path.join(self.opt.out, "checkpoint.pt")

    def _barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def _save_ckpt(self) -> None:
        if self.rank:
            return
        state = {"G": self.G.state_dict(), "EMA": self.ema.state_dict(), "D": self.D.state_dict(),
                 "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                 "step": self.step, "best": self.best, "base_steps": self.base_steps,
                 "config": self.cfg.to_json()}
        tmp = self.ckpt_path + ".part"
        torch.save(state, tmp)
        os.replace(tmp, self.ckpt_path)

    def _load_ckpt(self) -> None:
        state = torch.load(self.ckpt_path, map_location=self.device, weights_only=True)
        if ModelConfig.from_json(state["config"]) != self.cfg:
            raise ValueError("checkpoint was made with another model config")
        self.G.load_state_dict(state["G"])
        self.ema.load_state_dict(state["EMA"])
        self.D.load_state_dict(state["D"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.step = int(state["step"])
        self.best = float(state["best"])
        self.base_steps = int(state.get("base_steps", 0))
        self.sampler.rng = np.random.default_rng(self.opt.seed * 1000 + self.rank + 7919 * self.step)

    def _log(self, name: str, row: dict) -> None:
        if self.rank:
            return
        path = os.path.join(self.opt.out, name)
        new = not os.path.exists(path)
        if not new:  # a run resumed by another version may log other columns: keep the old log aside
            with open(path, newline="") as f:
                header = next(csv.reader(f), [])
            if header != list(row):
                os.replace(path, path[:-len(".csv")] + "-old.csv" if path.endswith(".csv") else path + ".old")
                new = True
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)

    def export(self, path: str, extra: dict | None = None) -> bytes:
        gan = self.step > self.opt.gan_start
        meta = {"steps": self.base_steps + self.step, "data": ",".join(self.opt.data),
                "losses": ("50 MSE + (1 - MS-SSIM)" if self.opt.loss == "distortion" else
                           "L1 x10 + (SSIM+L1 pyramid) x10") + ("; D feature matching x10 + hinge GAN x1" if gan
                                                                else "; GAN not reached"),
                "trained": "true"}
        meta.update(extra or {})
        return save_weights(self.ema, path, **meta)

    def _amp(self):
        on = self.device.type == "cuda" or self.opt.bf16
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=on)

    def _warmup_batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A warm-up batch of motion_batch pairs and the tokens of its references, then current frames."""
        ref, cur = self.sampler.batch(self.opt.motion_batch, same_prob=self.opt.same_prob)
        ref, cur = ref.to(self.device), cur.to(self.device)
        self.G.train()
        with self._amp():
            return ref, cur, self.G.token_encoder(torch.cat([ref, cur]))

    def _apply_g(self, loss: torch.Tensor, stats: dict) -> dict:
        """One guarded generator update outside DDP (warm-up stages use parts of G only)."""
        opt, G = self.opt, self.G
        if not torch.isfinite(loss):
            return {**stats, "skipped": 1}
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for p in G.parameters() if p.grad is not None]
        if self.world > 1:  # G is used outside DDP here: average the gradients by hand
            for p in params:
                dist.all_reduce(p.grad)
                p.grad /= self.world
        if not torch.isfinite(torch.nn.utils.clip_grad_norm_(params, opt.grad_clip)):
            self.opt_g.zero_grad(set_to_none=True)
            return {**stats, "skipped": 1}
        self.opt_g.step()
        self._ema_update()
        return {**stats, "skipped": 0}

    def flow_step(self) -> dict:
        """Flow warm-up: only E_T and the token flow learn, by warping the reference image (at half size)
        onto the current frame under the pyramid loss, pulled toward block matching's flow so that large
        motions are found. No frame is synthesised, so a step costs a fraction of a full one."""
        opt, G = self.opt, self.G
        ref, cur, tokens = self._warmup_batch()
        b = len(ref)
        with self._amp():
            flow = G.flow(tokens[b:], tokens[:b]).float()
        small_ref, small_cur = F.avg_pool2d(ref, 2), F.avg_pool2d(cur, 2)
        photo = pyramid_loss(warp(small_ref, flow), small_cur)
        sup = (flow - block_flow(ref, cur, G.flow.grid, 4)).abs().mean()
        tok = tokens.float().pow(2).mean()
        return self._apply_g(photo + opt.flow_sup * sup + opt.token_l2 * tok,
                             {"l1": 0.0, "perc": photo.item(), "adv": 0.0, "fm": 0.0, "tok": tok.item(),
                              "sup": 0.0, "d": 0.0})

    def train_step(self) -> dict:
        opt = self.opt
        self._set_lr()
        if opt.ae_steps <= self.step < opt.ae_steps + opt.flow_steps and self.G.flow is not None:
            return self.flow_step()
        same = 1.0 if self.step < opt.ae_steps else opt.same_prob
        ref, cur = self.sampler.batch(opt.batch, same_prob=same)
        if opt.coded_refs:
            ref = code_references(ref, self.sampler.rng, opt.coded_refs)
        fmt = torch.channels_last if opt.channels_last else torch.contiguous_format
        ref, cur = ref.to(self.device, memory_format=fmt), cur.to(self.device, memory_format=fmt)
        gan = self.step >= opt.gan_start
        amp = self._amp()
        if gan and self.step < opt.gan_start + opt.d_warmup:
            return self.d_step(ref, cur)
        self.G_train.train()
        with amp:
            fake, tokens, _ = self.G_train(ref, cur, return_aux=True)
        fake = fake.float()  # losses in float32 outside autocast: in bfloat16 SSIM overflowed (MODEL_CARD.md)
        l1 = (fake - cur).abs().mean()
        tok = tokens.float().pow(2).mean()
        if opt.loss == "distortion":  # "perc" logs this loss in place of the pyramid
            perc = mse_msssim(fake, cur).mean()
            main = perc
        else:
            perc = pyramid_loss(fake, cur)
            main = 10 * l1 + 10 * perc
        adv = fm = fake.new_zeros(())
        if gan:
            with amp:
                fl, ff = self.D_train(fake)
                with torch.no_grad():
                    _, rf = self.D_train(cur)
            adv, fm = hinge_g(fl), feature_matching(rf, ff)
        loss = main + 10 * fm + 1 * adv + opt.token_l2 * tok
        stats = {"l1": l1.item(), "perc": perc.item(), "adv": adv.item(), "fm": fm.item(), "tok": tok.item(),
                 "sup": 0.0, "d": 0.0}
        if not torch.isfinite(loss):
            return {**stats, "skipped": 1}
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(self.opt_g.param_groups[0]["params"], opt.grad_clip)
        if not torch.isfinite(gnorm):
            self.opt_g.zero_grad(set_to_none=True)
            return {**stats, "skipped": 1}
        self.opt_g.step()
        if gan:
            stats["d"] = self._update_d(cur, fake.detach())
        self._ema_update()
        return {**stats, "skipped": 0}

    def d_step(self, ref: torch.Tensor, cur: torch.Tensor) -> dict:
        """Discriminator warm-up: G (in training mode, as its frames look when the GAN term starts) makes
        frames without gradients and only D learns, so that the adversarial term starts from a critic that
        already separates real from generated frames instead of pushing G at random."""
        self.G_train.train()
        with torch.no_grad(), self._amp():
            fake = self.G_train(ref, cur)
        fake = fake.float()
        l1 = (fake - cur).abs().mean().item()
        d = self._update_d(cur, fake)
        return {"l1": l1, "perc": 0.0, "adv": 0.0, "fm": 0.0, "tok": 0.0, "sup": 0.0, "d": d, "skipped": 0}

    def _update_d(self, real: torch.Tensor, fake: torch.Tensor) -> float:
        """One hinge step of D on real and (detached) generated frames; its loss (0 when skipped as not finite)."""
        with self._amp():
            rl, _ = self.D_train(real)
            fl, _ = self.D_train(fake)
            ld = hinge_d(rl, fl)
        if not torch.isfinite(ld):
            return 0.0
        self.opt_d.zero_grad(set_to_none=True)
        ld.backward()
        torch.nn.utils.clip_grad_norm_(self.D.parameters(), self.opt.grad_clip)
        self.opt_d.step()
        return ld.item()

    def _set_lr(self) -> None:
        """With --lr-decay cosine, the generator's rates fall from their base values to 0 at opt.steps, so
        that a run ends on small steps (every stage: warm-ups too)."""
        if self.opt.lr_decay != "cosine":
            return
        scale = 0.5 * (1 + math.cos(math.pi * min(self.step / self.opt.steps, 1.0)))
        for g, base in zip(self.opt_g.param_groups, self.base_lrs):
            g["lr"] = base * scale

    @torch.no_grad()
    def _ema_update(self) -> None:
        decay = min(self.opt.ema_decay, (1 + self.step) / (10 + self.step))
        for e, p in zip(self.ema.parameters(), self.G.parameters()):
            e.lerp_(p, 1 - decay)
        for e, b in zip(self.ema.buffers(), self.G.buffers()):
            e.copy_(b)

    def run_eval(self) -> dict | None:
        if self.rank or not self.eval_clips:
            return None
        r = evaluate(self.ema, self.eval_clips, self.device)
        row = {"step": self.base_steps + self.step, **{k: round(v, 4) for k, v in r.items()}}
        self._log("eval.csv", row)
        if r["psnr"] > self.best:
            self.best = r["psnr"]
            self.export(os.path.join(self.opt.out, "best.safetensors"),
                        {"eval_psnr": round(r["psnr"], 3), "eval_msssim": round(r["msssim"], 4)})
        return r

    def fit(self, on_step=None) -> None:
        opt = self.opt
        t0 = last_ckpt = time.time()
        bad = 0
        if self.step == 0 and self.rank == 0 and self.eval_clips:
            self.run_eval()
        while self.step < opt.steps:
            stats = self.train_step()
            bad = bad + 1 if stats["skipped"] else 0
            if bad >= 20:  # persistently non-finite: go back to the last checkpoint
                if os.path.exists(self.ckpt_path):
                    self._load_ckpt()
                bad = 0
                continue
            self.step += 1
            if on_step:
                on_step(self.step, stats)
            if self.step % opt.log_every == 0:
                self._log("train.csv", {"step": self.base_steps + self.step, **{k: round(v, 5) for k, v in
                                                                                 stats.items()},
                                        "elapsed_s": round(time.time() - t0, 1)})
            if opt.eval_every and self.step % opt.eval_every == 0:
                self.run_eval()
            out_of_time = opt.max_minutes and time.time() - t0 > opt.max_minutes * 60
            if time.time() - last_ckpt > opt.ckpt_minutes * 60 or self.step == opt.steps or out_of_time:
                self._save_ckpt()
                last_ckpt = time.time()
            if out_of_time:
                break
        self._save_ckpt()
        if self.rank == 0:
            self.export(os.path.join(self.opt.out, "last.safetensors"))
