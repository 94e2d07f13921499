"""The shipped weights for each token size load, are trained, and code a few frames end to end."""
import numpy as np
import pytest
import torch

from imfcodec.codec import DecodeOptions, decode_file, encode_file
from imfcodec.presets import preset_options
from imfcodec.runtime import resolve_model
from tests.conftest import write_clip, eval_frames


@pytest.mark.parametrize("dm", [16, 32, 64])
def test_shipped_weights_for_dm(dm, tmp_path):
    lm = resolve_model(None, dm, torch.device("cpu"), allow_untrained=False)
    assert lm.model.cfg.dm == dm and lm.trained and lm.model.flow is not None
    src = write_clip(tmp_path / "c.y4m", eval_frames(("lia-vox-driving2", 6)))
    out = tmp_path / "c.imf"
    r = encode_file(src, str(out), preset_options("realtime", dm=dm, keep_tokens=True))
    assert r.tokens.shape[1] == dm
    frames = decode_file(str(out), None, DecodeOptions(), keep_frames=True).frames_rgb
    assert len(frames) == 6 and np.stack(frames).std() > 10  # pictures, not a flat field
