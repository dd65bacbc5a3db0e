"""nni_hrnas.compat: the filelock guard agrees with NNI's own pin."""

import importlib.metadata
import re

import filelock
import pytest

from nni_hrnas.compat import check_filelock


def nni_filelock_bound() -> str:
    """The upper bound NNI's metadata declares for filelock ('filelock <3.12' in NNI 3.0)."""
    (requirement,) = [r for r in importlib.metadata.requires("nni") if r.startswith("filelock")]
    return re.search(r"<\s*([\d.]+)", requirement).group(1)


def test_the_installed_filelock_passes():
    check_filelock()  # what pip installed beside NNI satisfies NNI's pin
    check_filelock(filelock.__version__)


@pytest.mark.parametrize("offset", [0, 1])
def test_filelock_at_or_above_nnis_bound_is_one_line_naming_the_fix(offset):
    major, minor = (int(p) for p in nni_filelock_bound().split(".")[:2])
    with pytest.raises(RuntimeError) as info:
        check_filelock(f"{major + offset}.{minor}.1")
    message = str(info.value)
    assert "\n" not in message and "pip install 'filelock<3.12'" in message


def test_filelock_just_below_nnis_bound_passes():
    major, minor = (int(p) for p in nni_filelock_bound().split(".")[:2])
    check_filelock(f"{major}.{minor - 1}.9")
