"""The codec's public entry points in one place: video file <-> .imf (the encoder, decoder and options
modules hold them)."""
from .decoder import DecodeResult, decode_file, decode_tokens, read_info, repeat_keyframes
from .encoder import EncodeResult, encode_file
from .options import (DEFAULT_KEYFRAME_CANDIDATES, DEFAULT_KEYFRAME_INTERVAL, DEFAULT_KEYFRAME_PSNR,
                      DEFAULT_PLAN_SEGMENTS, DEFAULT_ZFP_RATE, KEYFRAME_POSITIONS, DecodeOptions, EncodeOptions)

__all__ = ["EncodeOptions", "DecodeOptions", "EncodeResult", "DecodeResult", "encode_file", "decode_file",
           "decode_tokens", "repeat_keyframes", "read_info", "DEFAULT_KEYFRAME_CANDIDATES",
           "DEFAULT_KEYFRAME_INTERVAL", "DEFAULT_KEYFRAME_PSNR", "DEFAULT_PLAN_SEGMENTS", "DEFAULT_ZFP_RATE",
           "KEYFRAME_POSITIONS"]
