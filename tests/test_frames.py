"""uint8 frames <-> float tensors."""
import numpy as np
import torch

from imfcodec.frames import to_images, to_tensor


def test_frames_round_trip_exactly():
    frames = [np.random.default_rng(i).integers(0, 256, (6, 5, 3), dtype=np.uint8) for i in range(3)]
    x = to_tensor(frames)
    assert x.shape == (3, 3, 6, 5) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert all(np.array_equal(a, b) for a, b in zip(to_images(x), frames))


def test_to_images_clamps_and_rounds():
    x = torch.tensor([-0.5, 0.0, 0.6 / 255, 1.6 / 255, 2.0]).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    assert to_images(x)[0][0, :, 0].tolist() == [0, 0, 1, 2, 255]
