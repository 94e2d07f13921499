"""The device, weights and prior files a command runs with."""
import os

import pytest
import torch

from imfcodec.errors import UserError
from imfcodec.runtime import pick_device, resolve_model, shipped_prior_path, shipped_priors


def test_pick_device():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type in ("cpu", "cuda")
    with pytest.raises(UserError, match="unknown device"):
        pick_device("tpu")


def test_resolve_model_refuses_missing_and_untrained_weights(tmp_path, tiny):
    with pytest.raises(UserError, match="weights file not found"):
        resolve_model(str(tmp_path / "none.safetensors"), 32, torch.device("cpu"), False)
    with pytest.raises(UserError, match="no trained weights for dm=7"):
        resolve_model(None, 7, torch.device("cpu"), False)
    with pytest.raises(UserError, match="untrained"):
        resolve_model(str(tiny), 16, torch.device("cpu"), False)
    assert resolve_model(str(tiny), 16, torch.device("cpu"), True).model.cfg.dm == 16


def test_the_shipped_prior_is_found():
    path = shipped_prior_path(32)
    assert os.path.isfile(path) and shipped_priors(32) == [path] and shipped_priors(7) == []
