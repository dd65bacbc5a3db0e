"""Short HR-NAS searches on the `tiny` preset, shared by the tests and the resume worker."""

from __future__ import annotations

from nni.nas.execution import SequentialExecutionEngine
from nni.nas.space import RawFormatModelSpace
from tiny_data import tiny_evaluator

from nni_hrnas.strategy import ProgressiveShrinking
from search_spaces import HRNASSpace

# SGD: the penalty's pull on a gamma is proportional to lambda, so a short search separates lambdas.
EVALUATOR = dict(n_train=96, n_val=32, batch_size=16, optimizer="sgd", learning_rate=0.1, schedule="constant")
STRATEGY = dict(eps=1e-3, prune_every=1, epochs=3, recalibration_batches=2, ema_decay=0.9)


def copy_each_epoch(folder):
    """An ``on_epoch_end`` callback keeping each epoch's checkpoint as ``epoch{e}.pt`` in ``folder``."""
    import shutil
    from pathlib import Path

    from nni_hrnas.strategy.checkpoint import CHECKPOINT_NAME

    def copy(epoch: dict) -> None:
        shutil.copyfile(Path(folder) / CHECKPOINT_NAME, Path(folder) / f"epoch{epoch['epoch']}.pt")

    return copy


def tiny_search(evaluator=None, evaluator_kwargs=None, **kwargs) -> ProgressiveShrinking:
    """Run a search on `tiny` with the strategy alone (NNI's sequential engine, no experiment)."""
    space = HRNASSpace.from_preset("tiny")
    evaluator = evaluator or tiny_evaluator(**{**EVALUATOR, **(evaluator_kwargs or {})})
    strategy = ProgressiveShrinking(**{**STRATEGY, **kwargs})
    strategy.initialize(RawFormatModelSpace(space, evaluator), SequentialExecutionEngine())
    strategy.run()
    return strategy


def run_worker(config: dict, timeout: float = 300):
    """Run ``search_worker.py`` with ``config`` (written next to the run) in a fresh process."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    folder = Path(config["dir"])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"config{len(list(folder.glob('config*.json')))}.json"
    config = dict(config)
    evaluator = {**EVALUATOR, "n_train": 48, "n_val": 16, **config.pop("evaluator", {})}
    path.write_text(json.dumps({"evaluator": evaluator, **config}))
    worker = Path(__file__).with_name("search_worker.py")
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")]),
    )
    return subprocess.run(
        [sys.executable, str(worker), str(path)], env=env, capture_output=True, timeout=timeout
    )


def training_calls(folder, rank: int = 0) -> int:
    """How many training steps rank ``rank`` ran in ``folder`` (one line each, over every run there)."""
    from pathlib import Path

    path = Path(folder) / f"calls_rank{rank}.txt"
    return len(path.read_text().split()) if path.exists() else 0


def assert_same_search_state(a: dict, b: dict) -> None:
    """Two checkpoints hold the same search state, bit for bit: network, EMA, optimizer and scheduler
    states, counters, lambda scale, trajectory and RNG (wall time aside)."""
    for key in ("arch", "model", "ema", "ema_updates", "optimizer", "scheduler", "rng"):
        _assert_same(a[key], b[key], key)
    sa, sb = dict(a["state"]), dict(b["state"])
    sa.pop("wall_seconds"), sb.pop("wall_seconds")
    _assert_same(sa, sb, "state")


def _assert_same(x, y, where: str) -> None:
    import torch

    if torch.is_tensor(x):
        assert torch.is_tensor(y) and x.shape == y.shape and x.dtype == y.dtype, where
        assert torch.equal(x, y), (
            f"{where}: tensors differ (max |diff| {(x.double() - y.double()).abs().max()})"
        )
    elif isinstance(x, dict):
        assert isinstance(y, dict) and list(x) == list(y), f"{where}: keys {list(x)} vs {list(y)}"
        for k in x:
            _assert_same(x[k], y[k], f"{where}.{k}")
    elif isinstance(x, (list, tuple)):
        assert isinstance(y, (list, tuple)) and len(x) == len(y), f"{where}: lengths differ"
        for i, (u, v) in enumerate(zip(x, y, strict=True)):
            _assert_same(u, v, f"{where}[{i}]")
    elif isinstance(x, float) and x != x:
        assert isinstance(y, float) and y != y, f"{where}: {x} vs {y}"
    else:
        assert x == y, f"{where}: {x!r} vs {y!r}"
