"""benchmarks/gpu_check.py imports, parses its arguments and builds everything on the CPU (--dry-run)."""

import importlib.util
import json
from pathlib import Path

from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def test_gpu_check_dry_run_builds_on_the_cpu(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    assert gpu_check.main(["--dry-run", "--json", "--data", str(tmp_path / "cs")]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["dry_run"] and report["input_size"] == [3, 128, 256]  # the smoke pipeline's crop
    assert report["output"] == [1, 19, 32, 64] and report["trainer"]["accelerator"] == "cpu"
    # the fixture has the real layout, read by the project's loader above
    (image,) = (tmp_path / "cs" / "leftImg8bit" / "val").glob("*/*_leftImg8bit.png")
    assert Image.open(image).size == (128, 64)
    assert len(list((tmp_path / "cs" / "gtFine" / "train").glob("*/*_gtFine_labelIds.png"))) == 2
