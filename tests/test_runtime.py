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


@pytest.mark.parametrize("dm", [16, 32, 64])
def test_a_prior_ships_for_every_shipped_token_size(dm):
    """Each shipped network has a learned prior fitted to its own E_T, so --token-codec learned works at
    --dm 16, 32 and 64; it loads, for the right token size."""
    from entropy.learned import IntPrior
    path = shipped_prior_path(dm)
    assert os.path.isfile(path) and shipped_priors(dm) == [path] and shipped_priors(7) == []
    assert IntPrior.load(path).dm == dm
