"""GPU check: a Cityscapes search at the real input size, in bf16, on one GPU, in under 10 minutes.

Usage (a machine with CUDA):
    python benchmarks/gpu_check.py [--train-images 64] [--epochs 3] [--batch-size 4] [--devices 1]
    python benchmarks/gpu_check.py --dry-run     # anywhere: builds everything small on the CPU

Writes a Cityscapes-layout fixture at the real resolution (leftImg8bit/ and gtFine/ PNGs of
2048x1024, label ids of cityscapesscripts' table) and loads it with the project's loader
(``nni_hrnas.data.cityscapes``: scaled and cropped to 3x512x1024, the search's input size). Then,
side by side on the same data, batch and precision:

* plain training of the ``cityscapes`` supernet with NNI's Lightning evaluator (``--epochs``);
* the HR-NAS search of the same epochs with a prune step after each (``--lambda`` is raised from the
  task's 1.4e-4 so that a few epochs prune).

Prints (and with ``--json`` writes one JSON object): training images/s of the search, peak GPU
memory, units removed, and the search / plain-training time ratio. ``--dry-run`` checks the
arguments, writes a small fixture, builds the evaluator, the space, the strategy and Fabric and runs
one forward pass of the supernet at a small size on the CPU: what the tests run.

On a GPU machine whose Python has torch, Lightning and torchmetrics but where nothing can be
installed, the check runs with this repository and NNI 3.0's pure-Python needs on ``PYTHONPATH``:
nni, filelock<3.12 (a later one hangs NNI's experiment lock), json_tricks, schema,
typeguard<4.1.3, websockets and cityscapesscripts' ``helpers`` (label table), copied from an
environment where ``pip install -e .`` ran. Its one run (H200, 16 images, 2 epochs) is in the README.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def write_cityscapes(root: Path, n_train: int, n_val: int, height: int, width: int, seed: int = 0) -> Path:
    """Cityscapes' layout at ``height`` x ``width``: images whose red channel encodes 16x16 blocks of labels."""
    from PIL import Image

    sys.path.insert(0, str(ROOT))
    from tests.data.data_layouts import CS_CODE, CS_IDS, block_label, encode

    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            city = f"city{i % 3}"
            stem = f"{city}_{i:06d}_000019"
            for sub in ("leftImg8bit", "gtFine"):
                (root / sub / split / city).mkdir(parents=True, exist_ok=True)
            label = block_label(height, width, list(CS_IDS), seed=seed + 1000 * len(split) + i)
            rgb = encode(label, CS_CODE)
            noise = np.random.default_rng(seed + i).integers(0, 30, rgb.shape, dtype=np.uint8)
            Image.fromarray(rgb + noise).save(
                root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", compress_level=1
            )
            Image.fromarray(label, mode="L").save(
                root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png"
            )
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--train-images", type=int, default=64)
    parser.add_argument("--val-images", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4, help="per device")
    parser.add_argument("--lambda", dest="lambda_", type=float, default=2e-3)
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--precision", default="bf16-mixed")
    parser.add_argument("--data", help="fixture folder (default: a temporary one)")
    parser.add_argument("--dry-run", action="store_true", help="small, on the CPU, no training")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    import torch

    from nni_hrnas.search import SearchSettings, build_search, run_search
    from nni_hrnas.tasks.registry import get_task

    accelerator = "cpu" if args.dry_run else "cuda"
    with tempfile.TemporaryDirectory(prefix="hrnas-gpu-check-") as tmp:
        data = Path(args.data or Path(tmp) / "cityscapes")
        height, width = (64, 128) if args.dry_run else (1024, 2048)
        n_train, n_val = (2, 1) if args.dry_run else (args.train_images, args.val_images)
        started = time.perf_counter()
        if not (data / "leftImg8bit").is_dir():
            write_cityscapes(data, n_train, n_val, height, width)
        fixture_seconds = time.perf_counter() - started
        # the dry run uses the smoke pipeline (3x128x256 crops of 256x512); the check the real one (3x512x1024)
        settings = SearchSettings(
            task="cityscapes",
            data_root=str(data),
            epochs=args.epochs,
            prune_every=1,
            warmup_epochs=0.0,
            lambda_=args.lambda_,
            batch_size=args.batch_size,
            recalibration_batches=2,
            accelerator=accelerator,
            devices=args.devices,
            precision="32-true" if args.dry_run else args.precision,
            smoke=args.dry_run,
            out=str(Path(tmp) / "run"),
        )
        device = settings.device_settings()
        spec = get_task("cityscapes")
        plain = spec.make_evaluator(
            None,
            epochs=args.epochs,
            batch_size=args.batch_size,
            root=str(data),
            smoke=args.dry_run,
            enable_progress_bar=False,
            logger=False,
            num_sanity_val_steps=0,
            **device.trainer_kwargs(),
        )
        space, _, strategy = build_search(settings)
        input_size = tuple(plain.train_dataloaders.dataset[0][0].shape)
        if args.dry_run:
            device.fabric()
            with torch.no_grad():
                out = space.freeze(space.max_sample()).eval()(torch.zeros(1, *input_size))
            report = {
                "dry_run": True,
                "input_size": list(input_size),
                "output": list(out.shape),
                "fixture": [height, width],
                "strategy_input_size": list(strategy.input_size),
                "trainer": device.trainer_kwargs(),
            }
            print(json.dumps(report) if args.json else f"dry run ok: {report}")
            return 0

        torch.manual_seed(0)
        torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        plain.evaluate(space.freeze(space.max_sample()))
        plain_seconds = time.perf_counter() - started
        plain_peak = torch.cuda.max_memory_allocated()

        torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        result = run_search(settings)
        search_seconds = time.perf_counter() - started
        cost = result["search_cost"]
        report = {
            "gpu": torch.cuda.get_device_name(0),
            "input_size": list(input_size),
            "precision": args.precision,
            "devices": args.devices,
            "batch_per_device": args.batch_size,
            "epochs": args.epochs,
            "train_images": n_train,
            "fixture_seconds": fixture_seconds,
            "search_images_per_second": cost["images_seen"] / result["search_seconds"],
            "search_epoch_seconds": result["search_seconds"] / args.epochs,
            "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
            "plain_peak_gpu_memory_gib": plain_peak / 2**30,
            "plain_seconds": plain_seconds,
            "search_seconds": search_seconds,
            "search_over_plain": search_seconds / plain_seconds,
            "macs_before": result["macs_max"],
            "macs_after": result["macs"],
            "units_removed": sum(t["units_removed"] for t in result["trajectory"]),
            "miou": result["metric"],
        }
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:>28}: {value}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HRNAS_QUIET", "1")
    sys.exit(main())
