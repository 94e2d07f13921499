"""The layering: entropy/ is a library of its own, and training does not reach into the codec pipeline."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def imported_after(statement: str) -> set[str]:
    """The modules a fresh interpreter holds after running statement."""
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": ROOT}).stdout
    return set(out.split())


def test_entropy_imports_nothing_from_imfcodec():
    mods = imported_after("import entropy, entropy.learned, entropy.rice, entropy.zfp")
    assert "entropy.learned" in mods and not {m for m in mods if m.split(".")[0] == "imfcodec"}


def test_training_does_not_import_the_codec_pipeline():
    mods = imported_after("import imfcodec.train.loop, imfcodec.train.prior")
    pipeline = {"imfcodec.codec", "imfcodec.encoder", "imfcodec.decoder", "imfcodec.reader", "imfcodec.keyplan",
                "imfcodec.ratecontrol", "imfcodec.bitstream"}
    assert not mods & pipeline



def test_the_command_line_starts_without_plotting_or_benchmark_code():
    """Every command's start pays for what cli.main imports: rd-curve's plots and metrics load with it."""
    mods = imported_after("import cli.main")
    assert "cli.rd_curve" in mods and not {m for m in mods if m.split(".")[0] == "matplotlib"}
    assert "imfcodec.bench.runner" not in mods
