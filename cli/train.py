"""`imfcodec train`: train the IMF network (single process, or under torchrun for several GPUs)."""
from __future__ import annotations

import os

import click
import torch.distributed as dist

from imfcodec.train.loop import TrainOptions, Trainer

from .common import console, run_guarded


@click.command("train")
@click.option("--data", "data", multiple=True, required=True, type=click.Path(exists=True),
              help="Folder (or file) of training videos; repeat for more.")
@click.option("--eval-data", multiple=True, type=click.Path(exists=True),
              help="Folder of held-out videos for periodic evaluation.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder: checkpoints, logs, weights.")
@click.option("--size", type=click.IntRange(64, 1024), default=256, show_default=True, help="Frame size in pixels.")
@click.option("--dm", type=click.IntRange(1, 1024), default=32, show_default=True, help="Token size.")
@click.option("--steps", type=click.IntRange(min=1), default=100000, show_default=True, help="Total steps.")
@click.option("--batch", type=click.IntRange(min=1), default=4, show_default=True, help="Pairs per step (per process).")
@click.option("--lr", type=float, default=2e-4, show_default=True, help="Adam learning rate.")
@click.option("--lr-decay", type=click.Choice(["constant", "cosine"]), default="constant", show_default=True,
              help="Learning-rate schedule: cosine falls to 0 at --steps (for fine-tuning with --init).")
@click.option("--loss", type=click.Choice(["perceptual", "distortion"]), default="perceptual", show_default=True,
              help="perceptual: 10 L1 + 10 (SSIM + L1 pyramid); distortion: 50 MSE + (1 - MS-SSIM), the "
                   "loss the encoder's refinement uses and what PSNR / MS-SSIM score.")
@click.option("--ae-steps", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Autoencoder warm-up steps (current frame = reference).")
@click.option("--gan-start", type=click.IntRange(min=0), default=20000, show_default=True,
              help="Step at which the hinge GAN loss starts.")
@click.option("--d-lr", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Discriminator's learning rate (0: the same as --lr); not decayed.")
@click.option("--d-warmup", type=click.IntRange(min=0), default=0, show_default=True,
              help="Steps from --gan-start that train the discriminator alone on the generator's frames.")
@click.option("--eval-every", type=click.IntRange(min=0), default=500, show_default=True, help="Steps between evaluations.")
@click.option("--token-l2", type=click.FloatRange(min=0), default=1e-4, show_default=True,
              help="Weight of the mean squared token value: keeps tokens from drifting in scale.")
@click.option("--flow-steps", type=click.IntRange(min=0), default=0, show_default=True,
              help="Flow warm-up steps after the autoencoder ones: only E_T and the token flow learn, warping "
                   "the reference.")
@click.option("--flow-sup", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Weight of the pull toward block matching's flow during the flow warm-up.")
@click.option("--even-clips", is_flag=True, help="Draw every clip equally often (default: in proportion to its length).")
@click.option("--pixel-path", is_flag=True,
              help="Train a network with the pixel path (D_F's mask shows the warped reference); --init "
                   "weights without it keep everything else.")
@click.option("--train-part", type=click.Choice(["all", "decoder"]), default="all", show_default=True,
              help="decoder: only D_F (and the pixel path's mask) learns; E_T, the tokens, the alignment stay, "
                   "so the token prior and token guess still fit, and a step costs less.")
@click.option("--coded-refs", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of references intra-coded and decoded (AV1 or HEVC at a random CRF) before the step: "
                   "the codec's decoder only sees decoded keyframes.")
@click.option("--eval-coded", is_flag=True,
              help="Evaluate from each --eval-data clip's first frame as the default keyframe (AV1 CRF 40) decodes, "
                   "as the codec does, instead of the frame itself.")
@click.option("--bf16", is_flag=True, help="bfloat16 autocast on the CPU as well (always on CUDA).")
@click.option("--channels-last", is_flag=True, help="Channels-last memory format for the networks.")
@click.option("--max-minutes", type=float, default=0.0, show_default=True, help="Stop and save after this many minutes (0: no limit).")
@click.option("--cache-dir", type=click.Path(file_okay=False), default="", help="Frame cache folder (default: OUT/cache).")
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint.pt.")
@click.option("--init", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Start from these weights (no optimiser state): fine-tune shipped weights.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def train(data, eval_data, out, size, dm, steps, batch, lr, lr_decay, loss, ae_steps, gan_start, d_lr, d_warmup,
          eval_every, token_l2, flow_steps, flow_sup, max_minutes, cache_dir, resume, init, device, seed, even_clips,
          pixel_path, train_part, coded_refs, eval_coded, bf16, channels_last):
    """Train the IMF network on videos; the best EMA weights go to OUT/best.safetensors."""
    if bf16 and device != "cuda":
        import torch
        from imfcodec.fast import native_bf16
        if (device == "cpu" or not torch.cuda.is_available()) and not native_bf16():
            console.print("[yellow]warning:[/] this CPU has no native bfloat16 (AVX-512 BF16 or AMX): --bf16 "
                          "emulates it and trains several times slower than float32", highlight=False, soft_wrap=True)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed and not dist.is_initialized():
        import torch
        dist.init_process_group("nccl" if device != "cpu" and torch.cuda.is_available() else "gloo")
    opt = TrainOptions(data=list(data), out=out, size=size, dm=dm, steps=steps, batch=batch, lr=lr,
                       lr_decay=lr_decay, loss=loss,
                       ae_steps=ae_steps, gan_start=gan_start, d_lr=d_lr, d_warmup=d_warmup,
                       eval_data=list(eval_data), eval_every=eval_every,
                       token_l2=token_l2, flow_steps=flow_steps, flow_sup=flow_sup, max_minutes=max_minutes,
                       cache_dir=cache_dir, resume=resume, init=init, device=device, seed=seed,
                       even_clips=even_clips, pixel_path=pixel_path, train_part=train_part, coded_refs=coded_refs,
                       eval_coded=eval_coded, bf16=bf16, channels_last=channels_last)

    def go():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
        trainer = Trainer(opt, progress=lambda name, i, n: console.print(f"cache {i}/{n}: {name}"))
        rank0 = trainer.rank == 0
        with Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                      TimeRemainingColumn(), console=console, disable=not rank0) as p:
            task = p.add_task("train", total=steps, completed=trainer.step, info="")

            def on_step(step, st):
                rate = p.tasks[0].speed or 0
                p.update(task, completed=step,
                         info=f"l1 {st['l1']:.4f} perc {st['perc']:.4f} adv {st['adv']:.3f} {rate:.2f} it/s")
            trainer.fit(on_step)
        if rank0:
            console.print(f"done at step {trainer.step}; best eval PSNR {trainer.best:.2f} dB; weights in {out}")
    try:
        run_guarded(go)
    finally:
        if distributed and dist.is_initialized():
            dist.destroy_process_group()
