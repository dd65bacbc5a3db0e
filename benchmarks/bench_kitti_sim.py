"""kitti_sim: an HR-NAS search of the BEV backbone against PointPillars' RPN trained for the same time.

    nice -n 19 env OMP_NUM_THREADS=1 python benchmarks/bench_kitti_sim.py [--epochs 10] [--frames 160 48] [--seed 0]

Runs ``hrnas search --task kitti_sim`` (the task's defaults unless overridden), then trains the
CPU-sized PointPillars RPN (``pointpillars_sim``) with the same task module, data and optimiser for
the search's wall time, and prints one JSON object: moderate 3D / BEV AP (R40) before and after,
MACs of the supernet, the searched network and the RPN on the pseudo-image, and wall times.
Indicative on a shared CPU; the smoke version of the search is a unit test (tests/detection).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from nni_hrnas.search import SearchSettings, run_search
from nni_hrnas.tasks import get_task
from search_spaces.pointpillars import RPN_PRESETS, PointPillarsRPN


def evaluate(module, model, loader) -> dict[str, float]:
    module.set_model(model)
    model.eval()
    module.on_validation_epoch_start()
    with torch.no_grad():
        for i, batch in enumerate(loader):
            module.validation_step(batch, i)
    ap = module.evaluate_outputs(module.validation_state())
    model.train()
    return {"ap3d_moderate": ap["3d_moderate_R40"], "ap_bev_moderate": ap["bev_moderate_R40"]}


def train_for(module, model, loader, seconds: float, learning_rate: float) -> int:
    """Train ``model`` with the task's loss for ``seconds`` of wall time (AdamW, one-cycle over that time)."""
    from nni_hrnas.detection.anchors import detection_loss

    module.set_model(model)
    opt = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=1e-2)
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        for packed, gt, _ in loader:
            frac = min((time.perf_counter() - start) / seconds, 1.0)
            for g in opt.param_groups:  # linear warm-up over the first 30 %, then cosine-like decay
                g["lr"] = learning_rate * (frac / 0.3 if frac < 0.3 else max(1 - (frac - 0.3) / 0.7, 0.04))
            loss = detection_loss(model(packed), gt, module.anchors, module.pillars)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            if time.perf_counter() - start >= seconds:
                break
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--frames", type=int, nargs=2, default=None, metavar=("TRAIN", "VAL"))
    parser.add_argument("--out", default=None)
    parser.add_argument(
        "--seed", type=int, default=0, help="the search's seed, also the RPN's and the data's"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    settings = SearchSettings(
        task="kitti_sim",
        epochs=args.epochs,
        out=args.out,
        data_sizes=tuple(args.frames) if args.frames else None,
        seed=args.seed,
    )
    result = run_search(settings)
    spec = get_task("kitti_sim")
    train, val = spec.make_datasets(None, smoke=False, seed=settings.seed, sizes=settings.data_sizes)
    module = spec.make_lightning_module(**(settings.module_kwargs or {}))
    module.val_frames = val
    loader = torch.utils.data.DataLoader(train, batch_size=settings.batch_size, shuffle=True, drop_last=True)
    val_loader = torch.utils.data.DataLoader(val, batch_size=8)
    torch.manual_seed(settings.seed)
    rpn = PointPillarsRPN(RPN_PRESETS["pointpillars_sim"])
    before = evaluate(module, rpn, val_loader)
    steps = train_for(module, rpn, loader, result["run_seconds"], module.optim_config["learning_rate"])
    after = evaluate(module, rpn, val_loader)
    # the trajectory's first entry is the start (no metric): the first epoch is the first evaluated one
    evaluated = [e for e in result.get("trajectory", []) if e.get("metric") is not None]
    print(
        json.dumps(
            {
                "search": {
                    "metric_first_epoch": evaluated[0]["metric"] if evaluated else None,
                    "metric": result.get("metric"),
                    "macs_supernet": result.get("macs_max"),
                    "macs": result.get("macs"),
                    "params": result.get("params"),
                    "seconds": result["run_seconds"],
                    "run_dir": result.get("run_dir"),
                },
                "rpn_same_time": {
                    "before": before,
                    "after": after,
                    "steps": steps,
                    "macs": rpn.cost().macs,
                    "params": rpn.cost().params,
                },
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
