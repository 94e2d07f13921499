"""Speed of imfcodec's presets on this machine, end to end, against x265 and SVT-AV1.

    python benchmarks/speed.py [--clip ../shared/data/eval/lia-vox-driving2.mp4] [--frames 200]
        [--balanced-frames 100] [--archive-frames 12] [--call-threads 1] [--call-decode-threads N] [--profile]

For one 256x256 clip (its first --frames frames, written as y4m first; beyond its length the clip plays
backward, then forward again, so that a long run has no cut) it runs, each as its own process
timed from start to exit (Python's start, the weights and the output file included), one at a time:

* `imfcodec encode --preset P` and `imfcodec decode` (to .y4m) for each preset; the balanced preset on
  --balanced-frames frames and the archive preset on --archive-frames only (they run at about 3 and 0.13 fps);
* `imfcodec decode --synthesis exact` of the realtime file: the plain float32 decoder, and how far the
  fast one's PSNR is from it;
* **a two-way call**: a realtime encode of the clip and a decode of the realtime file from the step above
  (the other end's stream), started together with --call-threads threads each, on the same cores;
* x265 (CRF 51) and SVT-AV1 (CRF 63), their lowest rates, through PyAV single-threaded as
  `imfcodec rd-curve` runs them, encoding and decoding the same frames in this process;

and prints the fps of each, the peak resident memory of each process, and imfcodec realtime's fps as a
ratio of each anchor's. --profile also prints where the time goes inside one realtime encode and one
decode (cProfile, cumulative seconds of the pipeline's stages).
"""
from __future__ import annotations

import argparse
import cProfile
import os
import platform
import pstats
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from imfcodec.bench.anchors import ANCHORS  # noqa: E402
from imfcodec.bench.clip import read_clip  # noqa: E402
from imfcodec.metrics import psnr_rgb  # noqa: E402
from imfcodec.video_io import VideoWriter, probe, read_frames  # noqa: E402

PRESETS = ("realtime", "balanced", "archive")
ANCHOR_RATES = {"x265": 51, "svtav1": 63}


#: Runs a command and prints its peak RSS (KiB) as the last line of stderr. A child's peak RSS counts the
#: memory of the process it was forked from, so each command is started from this small launcher rather
#: than from the benchmark, which holds the clip's frames.
LAUNCH = ("import os, sys; pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ); "
          "_, st, ru = os.wait4(pid, 0); print(ru.ru_maxrss, file=sys.stderr); "
          "sys.exit(os.waitstatus_to_exitcode(st))")


def imfcodec(*args: str) -> list[str]:
    return [sys.executable, "-c", LAUNCH, sys.executable, "-m", "cli.main", *args]


def start(cmd: list[str]) -> tuple[subprocess.Popen, float]:
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), time.perf_counter()


def finish(proc: subprocess.Popen, t0: float) -> tuple[float, float, float]:
    """Wait for proc: (wall seconds, peak RSS in MiB, end time)."""
    err = proc.stderr.read().decode(errors="replace")
    proc.wait()
    end = time.perf_counter()
    if proc.returncode:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(proc.args[3:])}\n{err}")
    return end - t0, int(err.strip().splitlines()[-1]) / 1024, end


def timed(cmd: list[str]) -> tuple[float, float]:
    print("  running:", " ".join(cmd[5:]), file=sys.stderr, flush=True)
    proc, t0 = start(cmd)
    wall, rss, _ = finish(proc, t0)
    return wall, rss


def pingpong(clip, order: list[int]):
    """The clip's frames in the given order (RGB and its 4:2:0 planes)."""
    import dataclasses
    from imfcodec.bench.clip import Yuv420
    return dataclasses.replace(clip, rgb=clip.rgb[order], yuv=Yuv420(clip.yuv.packed[order]))


def frames_of(path: str, n: int | None = None) -> np.ndarray:
    return np.stack(list(read_frames(path, max_frames=n)))


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import torch
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}"


def profile(src: str, work: str, frames: int) -> None:
    """Where the time goes inside one realtime encode and one fast decode (in this process)."""
    import torch
    from imfcodec.codec import DecodeOptions, decode_file, encode_file
    from imfcodec.presets import preset_options
    imf, rec = os.path.join(work, "profile.imf"), os.path.join(work, "profile.y4m")
    stages = {"encode": ["read_frames", "to_model", "encode_tokens", "psnr", "synthesize", "code_keyframe",
                         "reference", "encode", "put_tokens"],
              "decode": ["read_chunks", "decode", "reference", "synthesize", "_to_images", "write"]}
    for name, call in (("encode", lambda: encode_file(src, imf, preset_options("realtime", max_frames=frames))),
                       ("decode", lambda: decode_file(imf, rec, DecodeOptions(synthesis="fast")))):
        p = cProfile.Profile()
        t0 = time.perf_counter()
        p.runcall(call)
        total = time.perf_counter() - t0
        st = pstats.Stats(p)
        print(f"\n{name} (realtime preset, {frames} frames, {torch.get_num_threads()} threads): "
              f"{total:.2f} s in the pipeline; cumulative seconds of its stages:")
        seen = {}
        for (file, _, func), (_, _, _, cum, _) in st.stats.items():
            if func in stages[name] and ("imfcodec" in file or "entropy" in file):
                key = f"{os.path.relpath(file, ROOT)}:{func}"
                seen[key] = max(seen.get(key, 0), cum)
        for key, cum in sorted(seen.items(), key=lambda kv: -kv[1]):
            print(f"  {cum:7.2f} s  {100 * cum / total:5.1f} %  {key}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clip", default=os.path.join(ROOT, "..", "shared", "data", "eval", "lia-vox-driving2.mp4"))
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--balanced-frames", type=int, default=100)
    ap.add_argument("--archive-frames", type=int, default=12)
    ap.add_argument("--call-threads", type=int, default=1, help="threads of each end of the call (0: default)")
    ap.add_argument("--call-decode-threads", type=int, default=0, help="the decoder's, if not --call-threads")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--keep", help="folder to keep the files in (default: a temporary one)")
    a = ap.parse_args()

    work = a.keep or tempfile.mkdtemp(prefix="imfcodec-speed-")
    os.makedirs(work, exist_ok=True)
    clip = read_clip(a.clip, 256, a.frames)
    if len(clip.rgb) < a.frames:  # longer than the clip: play it forward, backward, forward... (no cuts)
        m, order, fwd = len(clip.rgb), [], True
        while len(order) < a.frames:
            order += list(range(m)) if fwd else list(range(m - 2, 0, -1))
            fwd = not fwd
        clip = pingpong(clip, order[:a.frames])
    n = len(clip.rgb)
    src = os.path.join(work, "clip.y4m")
    with VideoWriter(src, 256, 256, probe(a.clip).fps) as w:
        for img in clip.rgb:
            w.write(img)
    ref = frames_of(src)  # the clip as y4m holds it (4:2:0): what every decoded frame is scored against
    print(f"# imfcodec speed: {os.path.relpath(a.clip, os.getcwd())}, {n} frames at 256x256\n")
    print(f"machine: {machine()}")
    print(f"command: python benchmarks/{os.path.basename(__file__)} " + " ".join(sys.argv[1:]) + "\n")

    rows = []
    for p in PRESETS:
        frames = min(n, {"archive": a.archive_frames, "balanced": a.balanced_frames}.get(p, n))
        imf, rec = os.path.join(work, f"{p}.imf"), os.path.join(work, f"{p}.y4m")
        ew, er = timed(imfcodec("encode", src, "-o", imf, "--preset", p, "--frames", str(frames), "-q"))
        dw, dr = timed(imfcodec("decode", imf, "-o", rec, "-q"))
        dec = frames_of(rec)
        bpp = os.path.getsize(imf) * 8 / (frames * 256 * 256)
        rows.append((f"imfcodec {p}", frames, frames / ew, er, frames / dw, dr, bpp,
                     float(psnr_rgb(dec, ref[:frames]).mean())))
    rt = os.path.join(work, "realtime.imf")
    exact = os.path.join(work, "realtime-exact.y4m")
    xw, xr = timed(imfcodec("decode", rt, "-o", exact, "-q", "--synthesis", "exact"))
    p_exact = float(psnr_rgb(frames_of(exact), ref).mean())
    p_fast = rows[0][7]
    rows.append(("imfcodec realtime, decode --synthesis exact", n, float("nan"), float("nan"), n / xw, xr,
                 rows[0][6], p_exact))

    # The call: both ends on the same cores at once.
    th = ["--threads", str(a.call_threads)] if a.call_threads else []
    enc, e0 = start(imfcodec("encode", src, "-o", os.path.join(work, "call.imf"), "--preset", "realtime",
                             "-q", *th))
    dth = ["--threads", str(a.call_decode_threads)] if a.call_decode_threads else th
    dec, d0 = start(imfcodec("decode", rt, "-o", os.path.join(work, "call.y4m"), "-q", *dth))
    results = {}
    waiters = [threading.Thread(target=lambda k, p, t: results.__setitem__(k, finish(p, t)), args=args)
               for args in (("encode", enc, e0), ("decode", dec, d0))]
    for w in waiters:
        w.start()
    for w in waiters:
        w.join()
    (ew, er, ee), (dw, dr, de) = results["encode"], results["decode"]
    overlap = (min(ee, de) - max(e0, d0)) / max(ew, dw)

    anchors = []
    for name, crf in ANCHOR_RATES.items():
        decoded, bits, es, ds = ANCHORS[name].encode_decode(clip.yuv, clip.fps, crf)
        anchors.append((name, crf, n / es, n / ds, bits / (n * 256 * 256)))

    print("| run | frames | encode fps | encode peak RSS MiB | decode fps | decode peak RSS MiB | bpp | PSNR-RGB dB |")
    print("|---|---|---|---|---|---|---|---|")
    for name, f, efps, erss, dfps, drss, bpp, psnr in rows:
        e = "" if efps != efps else f"{efps:.1f}"
        r = "" if erss != erss else f"{erss:.0f}"
        print(f"| {name} | {f} | {e} | {r} | {dfps:.1f} | {drss:.0f} | {bpp:.4f} | {psnr:.2f} |")
    print(f"| **two-way call** (realtime encode of the clip and decode of the realtime file at once, "
          f"threads: encode {a.call_threads or 'default'}, decode {a.call_decode_threads or a.call_threads or 'default'}; "
          f"overlap {100 * overlap:.0f} %) | {n} | **{n / ew:.1f}** | "
          f"{er:.0f} | **{n / dw:.1f}** | {dr:.0f} | | |")
    for name, crf, efps, dfps, bpp in anchors:
        print(f"| {name} crf {crf} (PyAV, 1 thread) | {n} | {efps:.1f} | | {dfps:.1f} | | {bpp:.4f} | |")
    print(f"\nfast decoder against the plain one (--synthesis exact) on the realtime file: "
          f"{p_fast - p_exact:+.3f} dB PSNR-RGB against the source ({p_fast:.3f} / {p_exact:.3f})")
    rt_enc, rt_dec = rows[0][2], rows[0][4]
    for name, crf, efps, dfps, _ in anchors:
        print(f"imfcodec realtime / {name} crf {crf}: encode {rt_enc / efps:.3g}x, decode {rt_dec / dfps:.3g}x "
              f"(in the call: {n / ew / efps:.3g}x, {n / dw / dfps:.3g}x)")
    print("(imfcodec's fps include process start and loading the weights; the anchors' are their "
          "encoders' and decoders' own, in this process)")
    if a.profile:
        profile(src, work, n)


if __name__ == "__main__":
    main()
