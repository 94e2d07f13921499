"""Keyframes: one RGB frame through a standard intra codec via PyAV, and back; or all of a file's keyframes
as one HEVC stream in which a refresh is predicted from the keyframe before it (``hevc-inter``).

AV1 (SVT-AV1, 4:2:0) at CRF 40 is the default: past a point a better keyframe barely improves the frames
synthesised from it, so its bits buy more as more frequent keyframes (MODEL_CARD.md, "Keyframes").
HEVC (libx265, all-intra, 4:4:4) is the alternative. Both decoders are bit-exact by specification, so the
encoder and every decoder see the same keyframe. `quality` is the codec's CRF (lower is better); PNG is
lossless and ignores it.

``hevc-inter`` (libx265, 4:2:0, low delay: one picture in, one packet out) codes the first keyframe, and
one in every ``intra_every``, as an IDR picture, and the others as P pictures predicted from the keyframe
before: a refresh of the same face and background costs a fraction of an intra picture. Its pictures decode
only in order, through one decoder per file (:class:`Decoder`); an IDR is a random-access point. The CRF is
chosen at each IDR and holds until the next.
"""
from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np

from .errors import BitstreamError
from .svt import own_scheduling

CODECS = ("hevc", "av1", "png", "hevc-inter")
INTER = "hevc-inter"
DEFAULT_CODEC = "av1"
DEFAULT_QUALITY = 40
#: The highest CRF of each lossy codec: where a rate cap stops raising it.
MAX_QUALITY = {"av1": 63, "hevc": 51, "hevc-inter": 51}
#: hevc-inter: an IDR picture (a random-access point, and a new CRF) every this many keyframes.
DEFAULT_INTRA_EVERY = 8
_X265_INTER = "log-level=error:info=0:keyint=-1:scenecut=0:rc-lookahead=0:bframes=0:frame-threads=1:pools=none"


def _encode_video(img: np.ndarray, codec: str, pix_fmt: str, options: dict) -> bytes:
    with own_scheduling():
        return _encode_picture(img, codec, pix_fmt, options)


def _encode_picture(img: np.ndarray, codec: str, pix_fmt: str, options: dict) -> bytes:
    h, w = img.shape[:2]
    ctx = av.CodecContext.create(codec, "w")
    ctx.width, ctx.height, ctx.pix_fmt = w, h, pix_fmt
    ctx.time_base = Fraction(1, 25)
    ctx.framerate = 25
    ctx.options = options
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24").reformat(format=pix_fmt)
    frame.pts = 0
    out = b"".join(bytes(p) for p in ctx.encode(frame))
    out += b"".join(bytes(p) for p in ctx.encode(None))
    return out


def _decode_video(data: bytes, codec: str) -> np.ndarray:
    ctx = av.CodecContext.create(codec, "r")
    frames = []
    try:
        frames += ctx.decode(av.Packet(data))
        frames += ctx.decode(None)
    except (av.error.FFmpegError, ValueError) as e:
        raise BitstreamError(f"keyframe cannot be decoded: {e}") from None
    if not frames:
        raise BitstreamError("keyframe chunk holds no decodable picture")
    return frames[0].to_ndarray(format="rgb24")


def encode(img: np.ndarray, codec: str = DEFAULT_CODEC, quality: int = DEFAULT_QUALITY) -> bytes:
    """Intra-code one RGB uint8 frame (H, W, 3)."""
    if codec == "hevc":
        return _encode_video(img, "libx265", "yuv444p",
                             {"crf": str(quality), "preset": "slow",
                              "x265-params": "log-level=error:keyint=1:info=0"})
    if codec == "av1":
        return _encode_video(img, "libsvtav1", "yuv420p", {"crf": str(quality), "preset": "4"})
    if codec == "png":
        buf = io.BytesIO()
        with av.open(buf, "w", format="image2pipe") as c:
            s = c.add_stream("png")
            s.width, s.height, s.pix_fmt = img.shape[1], img.shape[0], "rgb24"
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                c.mux(p)
            for p in s.encode():
                c.mux(p)
        return buf.getvalue()
    raise ValueError(f"unknown keyframe codec {codec!r} (known: {', '.join(CODECS)})")


#: Intra coders at their fast presets and the CRF ranges drawn for training's references: the artefacts of
#: the keyframe coders (AV1's blur, HEVC's blocks) around the presets' qualities (AV1 CRF 40, HEVC CRF 34)
#: and coarser, as under a rate target, at a fraction of their time.
DEGRADERS = (("libsvtav1", "libdav1d", {"preset": "8"}, (34, 56)),
             ("libx265", "hevc", {"preset": "ultrafast", "x265-params": "log-level=error:keyint=1:info=0"}, (28, 44)))


def degrade(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An RGB uint8 frame intra-coded and decoded again by a coder and CRF drawn from DEGRADERS: what a
    decoder sees of a keyframe, so that training shows the network references as the codec gives them."""
    encoder, decoder, options, (lo, hi) = DEGRADERS[int(rng.integers(len(DEGRADERS)))]
    data = _encode_video(img, encoder, "yuv420p", {**options, "crf": str(int(rng.integers(lo, hi + 1)))})
    return _sized(_decode_video(data, decoder), img.shape[1], img.shape[0])


def decode(data: bytes, codec: str, width: int, height: int) -> np.ndarray:
    """Decode an intra keyframe payload to RGB uint8 and check it has the coded size."""
    img = _decode_video(data, {"hevc": "hevc", "av1": "libdav1d", "png": "png"}[codec])
    return _sized(img, width, height)


def _sized(img: np.ndarray, width: int, height: int) -> np.ndarray:
    if img.shape[:2] != (height, width):
        raise BitstreamError(f"keyframe is {img.shape[1]}x{img.shape[0]}, header says {width}x{height}")
    return img


class _InterRun:
    """One IDR picture and the P pictures after it, from one x265 encoder at one CRF."""

    def __init__(self, quality: int, width: int, height: int):
        ctx = av.CodecContext.create("libx265", "w")
        ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
        ctx.time_base, ctx.framerate = Fraction(1, 25), 25
        ctx.options = {"crf": str(quality), "preset": "medium", "tune": "zerolatency", "x265-params": _X265_INTER}
        self.ctx, self.quality, self.pictures = ctx, quality, []

    def code(self, img: np.ndarray) -> bytes:
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24").reformat(format="yuv420p")
        frame.pts = len(self.pictures)
        out = b"".join(bytes(p) for p in self.ctx.encode(frame))
        if not out:
            raise RuntimeError("x265 held a keyframe back: the low-delay settings did not apply")
        self.pictures.append(img)
        return out


class Encoder:
    """Codes a file's keyframes in order. ``trial`` says what a picture would cost without coding it into
    the file; ``commit`` codes it (the next keyframe of the file)."""

    def __init__(self, codec: str, intra_every: int = DEFAULT_INTRA_EVERY):
        if codec not in CODECS:
            raise ValueError(f"unknown keyframe codec {codec!r} (known: {', '.join(CODECS)})")
        self.codec, self.intra_every = codec, intra_every
        self.run: _InterRun | None = None
        self._force = False  # force_intra
        # The last trial: picture, quality, data, and (hevc-inter) the run that coded it, which a commit of
        # the same picture at the same quality takes over instead of coding the picture again.
        self._last: tuple[np.ndarray, int, bytes, _InterRun | None] | None = None
        self._sizes: dict[bool, int] = {}  # the last trial's or commit's bytes, intra and predicted

    @property
    def next_is_intra(self) -> bool:
        """Whether the next keyframe starts a run (always, but for hevc-inter's P pictures): only then does
        its quality change anything."""
        r = self.run
        return self.codec != INTER or r is None or self._force or len(r.pictures) >= self.intra_every

    def force_intra(self, on: bool = True) -> None:
        """Make the next keyframe an IDR, a new run at a quality of its own (on), or leave it to the run
        (off): a P picture, at its run's quality, may not fit a rate cap where an IDR at a higher one does."""
        self._force, self._last = on, None

    def estimate(self) -> int:
        """Bytes the next keyframe will take, going by the last one of its kind (an intra one's before any
        predicted one is known; 0 before any)."""
        return self._sizes.get(self.next_is_intra, self._sizes.get(True, 0))

    def trial(self, img: np.ndarray, quality: int) -> bytes:
        """What coding img next at quality would produce (a P picture is coded by replaying its run)."""
        run = None
        if self.codec != INTER:
            data = encode(img, self.codec, quality)
        elif self.next_is_intra:
            run = _InterRun(quality, img.shape[1], img.shape[0])
            data = run.code(img)
        else:
            run = _InterRun(self.run.quality, img.shape[1], img.shape[0])
            for pic in self.run.pictures:
                run.code(pic)
            data = run.code(img)
        self._last = (img, quality, data, run)
        self._sizes[self.next_is_intra] = len(data)
        return data

    def commit(self, img: np.ndarray, quality: int) -> bytes:
        """Code img as the file's next keyframe (quality applies where next_is_intra)."""
        last, self._last = self._last, None
        intra, self._force = self.next_is_intra, False
        if last and last[0] is img and (last[1] == quality or not intra):
            data = last[2]
            if self.codec == INTER:
                self.run = last[3]
        elif self.codec != INTER:
            data = encode(img, self.codec, quality)
        else:
            if intra:
                self.run = _InterRun(quality, img.shape[1], img.shape[0])
            data = self.run.code(img)
        self._sizes[intra] = len(data)
        return data


class Decoder:
    """Decodes a file's keyframes in order: each on its own, or hevc-inter's through one HEVC decoder."""

    def __init__(self, codec: str, width: int, height: int):
        self.codec, self.width, self.height = codec, width, height
        self.ctx = _hevc_decoder() if codec == INTER else None
        self.run: list[bytes] = []  # hevc-inter: the pictures decoded since the last IDR, for peek

    def decode(self, data: bytes) -> np.ndarray:
        """The next keyframe of the file."""
        if self.ctx is None:
            return decode(data, self.codec, self.width, self.height)
        frame = _decode_one(self.ctx, data)
        if frame.key_frame:
            self.run = []
        self.run.append(data)
        return _sized(frame.to_ndarray(format="rgb24"), self.width, self.height)

    def peek(self, data: bytes) -> np.ndarray:
        """What decode(data) would give as the next keyframe, without moving on: the encoder's candidate
        keyframes are tried this way before one of them is coded. A P picture is decoded after its run's
        pictures, on a decoder of its own."""
        if self.ctx is None:
            return decode(data, self.codec, self.width, self.height)
        ctx = _hevc_decoder()
        for pic in self.run:
            _decode_one(ctx, pic)
        return _sized(_decode_one(ctx, data).to_ndarray(format="rgb24"), self.width, self.height)


def _hevc_decoder() -> av.CodecContext:
    ctx = av.CodecContext.create("hevc", "r")
    ctx.thread_count = 1  # no frame threading: each packet gives its picture at once
    return ctx


def _decode_one(ctx: av.CodecContext, data: bytes) -> av.VideoFrame:
    """The one picture a keyframe chunk's data decodes to, on the pictures ctx has decoded before."""
    try:
        frames = list(ctx.decode(av.Packet(data)))
    except (av.error.FFmpegError, ValueError) as e:
        raise BitstreamError(f"keyframe cannot be decoded: {e}") from None
    if len(frames) != 1:
        raise BitstreamError("keyframe chunk holds no picture that decodes on the keyframes before it"
                             if not frames else "keyframe chunk holds more than one picture")
    return frames[0]
