"""Reading an .imf file in frame order: its chunks, CRC-checked, turned into keyframes, decoder offsets and
token arrays, with every rule on their order checked (bitstream_spec.md, "Chunk order")."""
from __future__ import annotations

import os
import stat
import sys
from typing import Iterator

import numpy as np

from . import bitstream as bs
from . import keyframe
from .errors import BitstreamError, UserError
from .runtime import shipped_priors
from .video_io import RESIZE_POLICIES
from entropy import coder_from_header


def open_chunks(path: str) -> tuple[int | None, Iterator[bs.Chunk]]:
    """The size of the file at path and its chunks, read lazily. "-" is standard input, read as a stream
    as it grows (size None), as is a named pipe."""
    if path == "-":
        size, f = None, os.fdopen(os.dup(sys.stdin.fileno()), "rb")
    elif os.path.exists(path) and stat.S_ISFIFO(os.stat(path).st_mode):
        size, f = None, open(path, "rb")
    elif not os.path.isfile(path):
        raise UserError(f"input not found: {path}")
    else:
        size = os.path.getsize(path)
        f = open(path, "rb")

    def gen():
        with f:
            yield from bs.read_chunks(f, size)
    return size, gen()


class Segments:
    """Walks the chunks of a file in order, checking that frame indices are contiguous and the header's."""

    def __init__(self, path: str):
        self.size, self.chunks = open_chunks(path)
        first = next(self.chunks)
        self.compact = bs.compact(first.version)
        self.header = bs.Header.unpack(first.payload, self.compact)
        h = self.header
        self.version = first.version
        if h.frames == bs.UNKNOWN_FRAMES and first.version[0] < bs.STREAM_VERSION[0]:
            raise BitstreamError("header has an impossible token size or frame count")
        #: frames the file may hold: the header's count, or (a stream of unknown length) the most there can be
        self.limit = bs.MAX_FRAMES if h.frames == bs.UNKNOWN_FRAMES else h.frames
        self.frames: int | None = None if h.frames == bs.UNKNOWN_FRAMES else h.frames  # known after END
        if h.keyframe_codec in bs.INTER_CODECS and first.version[0] < bs.INTER_VERSION[0]:
            raise BitstreamError(f"keyframe codec id {h.keyframe_codec} needs a {bs.INTER_VERSION[0]}.x file")
        self.keys = keyframe.Decoder(bs.keyframe_codec_name(h.keyframe_codec), h.width, h.height)
        if h.resize not in RESIZE_POLICIES.values():
            raise BitstreamError(f"unknown resize policy id {h.resize} in the header")
        try:
            self.coder = coder_from_header(h.token_codec, h.dm, h.token_params, shipped_priors(h.dm))
        except (ValueError, OSError) as e:
            raise BitstreamError(f"header: {e}") from None

    def __iter__(self) -> Iterator[tuple[str, int, object]]:
        """Yields ('ref', index, rgb) when a keyframe arrives (it is the reference from then on), ('adapt',
        index, (scheme, offsets, step)) when decoder offsets do (for the frames from index on), and
        ('key', index, rgb), ('tokens', first, array) and ('hold', first, count: frames shown as the
        reference) in frame order. A segment's keyframe may come after
        frames it serves: its chunk comes first, and the frames before it follow as tokens."""
        nxt = 0
        key: tuple[int, np.ndarray] | None = None  # the current segment's keyframe, until its frame is reached
        have_key = False
        for c in self.chunks:
            name = bs.chunk_name(c)
            if c.ctype == bs.HEAD:
                raise BitstreamError(f"corrupt {name}: a second header")
            if c.ctype == bs.END:
                end = bs.unpack_end(c.payload, c.version[0])
                if end is not None and self.frames is not None and end != self.frames:
                    raise BitstreamError(f"corrupt END chunk: it says {end} frames, the header {self.frames}")
                self.frames = self.frames if end is None else end
                break
            if c.ctype == bs.ADPT:
                if key is not None:
                    raise BitstreamError(f"corrupt {name}: decoder offsets before frame {key[0]}, the "
                                         f"keyframe, was reached")
                yield "adapt", nxt, bs.unpack_adapt(c.payload)
                continue
            if c.ctype == bs.KEYF:
                key = self._keyframe(c, name, nxt, key)
                have_key = True
                yield "ref", key[0], key[1]
            elif c.ctype == bs.HOLD:
                first, count = bs.unpack_hold(c.payload, self.compact, nxt)
                self._run(name, "held frames", first, count, nxt, key, have_key)
                yield "hold", nxt, count
                nxt += count
            else:
                toks = self._tokens(c, name, nxt, key, have_key)
                yield "tokens", nxt, toks
                nxt += len(toks)
            if key is not None and key[0] == nxt:
                yield "key", nxt, key[1]
                key, nxt = None, nxt + 1
        if self.frames is None:
            raise BitstreamError("truncated .imf stream: it ends without an END chunk")
        if nxt != self.frames:
            raise BitstreamError(f"the file holds {nxt} frames, its header says {self.frames}")

    def _keyframe(self, c: bs.Chunk, name: str, nxt: int, key: tuple[int, np.ndarray] | None
                  ) -> tuple[int, np.ndarray]:
        """A keyframe chunk's frame index and decoded picture, the next frame to come being nxt."""
        idx, data = bs.unpack_keyframe(c.payload, self.compact)
        if key is not None:
            raise BitstreamError(f"corrupt {name}: a keyframe before frame {key[0]}, the previous "
                                 f"keyframe, was reached")
        if not nxt <= idx < self.limit:
            raise BitstreamError(f"corrupt {name}: keyframe for frame {idx}, expected {nxt} to "
                                 f"{self.limit - 1}")
        img = self.keys.decode(data)
        self.coder.reset()
        return idx, img

    def _run(self, name: str, what: str, first: int, count: int, nxt: int, key: tuple[int, np.ndarray] | None,
             have_key: bool) -> None:
        """A run of count frames from first (tokens, or held frames) must start at frame nxt, after a
        keyframe, and stop before the pending keyframe and the file's end."""
        if first != nxt or not have_key:
            raise BitstreamError(f"corrupt {name}: {what} for frame {first}, expected {nxt}")
        if first + count > (key[0] if key else self.limit):
            raise BitstreamError(f"corrupt {name}: {what} run past "
                                 f"{f'the keyframe at frame {key[0]}' if key else 'the last frame'}")

    def _tokens(self, c: bs.Chunk, name: str, nxt: int, key: tuple[int, np.ndarray] | None,
                have_key: bool) -> np.ndarray:
        """A token chunk's tokens, which must start at frame nxt and stop before the pending keyframe."""
        first, count, payload = bs.unpack_tokens(c.payload, self.compact, nxt)
        self._run(name, "tokens", first, count, nxt, key, have_key)
        try:
            return self.coder.decode(payload, count)
        except ValueError as e:
            raise BitstreamError(f"corrupt {name}: {e}") from None
