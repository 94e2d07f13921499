"""Outputs written whole or not at all."""
import os

import pytest

from imfcodec.errors import UserError
from imfcodec.files import atomic_output, refuse_overwrite


def test_atomic_output_renames_on_success_and_removes_on_failure(tmp_path):
    dst = tmp_path / "out.bin"
    with atomic_output(str(dst)) as tmp:
        with open(tmp, "wb") as f:
            f.write(b"data")
        assert not dst.exists()
    assert dst.read_bytes() == b"data"
    with pytest.raises(RuntimeError):
        with atomic_output(str(dst)) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"half")
            raise RuntimeError("interrupted")
    assert dst.read_bytes() == b"data" and os.listdir(tmp_path) == ["out.bin"]
    with pytest.raises(UserError, match="output folder does not exist"):
        with atomic_output(str(tmp_path / "no" / "out.bin")):
            pass


def test_refuse_overwrite(tmp_path):
    src = tmp_path / "a"
    src.write_bytes(b"x")
    refuse_overwrite(str(src), str(tmp_path / "b"))
    with pytest.raises(UserError, match="overwrite the input"):
        refuse_overwrite(str(src), str(src))
