"""Threads per worker: the cores split between the processes that share the machine."""

import os

import pytest
import torch

from nni_hrnas.threads import limit_threads, threads_per_worker


@pytest.mark.parametrize(
    "cores, workers, cap, expected",
    [
        (8, 1, None, 8),
        (8, 2, None, 4),
        (8, 3, None, 2),
        (8, 16, None, 1),
        (2, 2, None, 1),
        (8, 2, "1", 1),
        (8, 2, "6", 4),  # OMP_NUM_THREADS caps the share, never raises it
    ],
)
def test_the_cores_are_split(cores, workers, cap, expected, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    if cap:
        monkeypatch.setenv("OMP_NUM_THREADS", cap)
    assert threads_per_worker(workers) == expected


def test_an_explicit_count_wins_and_is_checked():
    assert threads_per_worker(4, threads=3) == 3
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match="threads per worker"):
            threads_per_worker(2, threads=bad)


def test_limit_threads_sets_torch_and_the_environment_of_children(monkeypatch):
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.setenv(name, "7")
    before = torch.get_num_threads()
    try:
        limit_threads(1)
        assert torch.get_num_threads() == 1
        assert os.environ["OMP_NUM_THREADS"] == os.environ["MKL_NUM_THREADS"] == "1"
    finally:
        torch.set_num_threads(before)
