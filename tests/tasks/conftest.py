import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "data"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from data_layouts import cityscapes_root, coco_root  # noqa: E402, F401


@pytest.fixture(autouse=True)
def _digits_cache(tmp_path_factory, monkeypatch):
    """Keep the digits caches of the tests out of the user's cache; quiet trainers."""
    monkeypatch.setenv("HRNAS_CACHE", str(tmp_path_factory.getbasetemp() / "hrnas_cache"))
    monkeypatch.setenv("HRNAS_QUIET", "1")
    monkeypatch.delenv("HRNAS_SMOKE", raising=False)
