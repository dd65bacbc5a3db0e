"""Runs one checkpointed `tiny` search in a fresh process, on 1 or 2 CPU processes, for the kill,
resume and data-parallel tests.

    python search_worker.py CONFIG.json

CONFIG: ``dir`` (checkpoint and output folder), ``epochs``, ``devices``, ``precision``, ``resume``,
``kill_at_call`` (this process's training step, 1-based, at which rank ``kill_rank`` sends itself
SIGKILL: the kill lands exactly there), ``record`` (write per-rank hashes of the architecture and
the live and EMA weights at every prune step, and who wrote each checkpoint). Every training step a
rank runs appends one line to ``calls_rank{r}.txt``; each epoch's checkpoint is copied to
``epoch{e}.pt``; the searched run folder goes to ``run/`` and ``out.json`` holds the result.
"""

import dataclasses
import hashlib
import json
import os
import signal
import sys
import types
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _digest(state) -> str:
    h = hashlib.sha256()
    for name, value in state.items():
        h.update(name.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def main(config_path: str) -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:0] = [here, os.path.dirname(here)]
    import torch
    from search_helpers import copy_each_epoch, tiny_search
    from tiny_data import tiny_evaluator

    import nni_hrnas.strategy.loop as loop
    from nni_hrnas.strategy import DeviceSettings
    from nni_hrnas.strategy.checkpoint import save_searched

    cfg = json.loads(Path(config_path).read_text())
    out = Path(cfg["dir"])
    evaluator = tiny_evaluator(**{**cfg["evaluator"]})
    module = evaluator.module
    original_step = type(module).training_step
    calls = {"n": 0}

    def training_step(self, batch, batch_idx):
        calls["n"] += 1
        rank = _rank()
        with open(out / f"calls_rank{rank}.txt", "a") as f:
            f.write(f"{calls['n']}\n")
        if cfg.get("kill_at_call") == calls["n"] and cfg.get("kill_rank", 0) == rank:
            os.kill(os.getpid(), signal.SIGKILL)
        return original_step(self, batch, batch_idx)

    module.training_step = types.MethodType(training_step, module)

    if cfg.get("record"):
        original_evaluate, original_save = loop.evaluate, loop.save_checkpoint
        steps = {"n": 0}

        def evaluate(task, model, loader, fabric=None):
            live = task.model  # the live network (set up by Fabric) before evaluate swaps in the EMA one
            live = getattr(live, "module", live)
            live = getattr(live, "module", live)  # _FabricModule -> DDP -> network
            steps["n"] += 1
            record = {
                "arch": dict(model.arch),
                "live": _digest(live.state_dict()),
                "ema": _digest(model.state_dict()),
            }
            (out / f"hash_rank{_rank()}_step{steps['n']}.json").write_text(json.dumps(record))
            return original_evaluate(task, model, loader, fabric)

        def save_checkpoint(path, payload):
            with open(out / "checkpoint_writes.txt", "a") as f:
                f.write(f"{_rank()} {payload['state']['epoch']}\n")
            original_save(path, payload)

        loop.evaluate, loop.save_checkpoint = evaluate, save_checkpoint

    strategy = tiny_search(
        evaluator,
        lambda_=cfg.get("lambda", 0.05),
        epochs=cfg["epochs"],
        checkpoint_dir=out,
        resume=cfg.get("resume", False),
        target_macs=cfg.get("target_macs"),
        on_epoch_end=copy_each_epoch(out),
        devices=DeviceSettings(
            accelerator="cpu", devices=cfg.get("devices", 1), precision=cfg.get("precision", "32-true")
        ),
    )
    from search_spaces import HRNASSpace

    config = dataclasses.asdict(
        HRNASSpace.from_preset("tiny").config
    )  # what load_searched_model rebuilds from
    save_searched(out / "run", strategy.result["arch"], strategy.model, dict(strategy.result, config=config))
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.save(strategy.model.eval()(x), out / "searched_outputs.pt")
    (out / "out.json").write_text(
        json.dumps(
            {
                k: strategy.result[k]
                for k in ("arch", "metric", "resumed_at_epoch", "search_cost", "trajectory", "devices")
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
