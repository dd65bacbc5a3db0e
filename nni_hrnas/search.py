"""One whole HR-NAS search from a task name: ``hrnas search`` and ``hrnas export``.

Composes the task (``nni_hrnas.tasks.get_task``), the space (``HRNASSpace.from_preset``) and the
strategy (:class:`~nni_hrnas.strategy.ProgressiveShrinking`) through NNI's ``NasExperiment``, and
writes a run folder (:class:`~nni_hrnas.run_folder.RunFolder`: arch, trained weights, ``result.json``
holding a :class:`~nni_hrnas.run_folder.SearchResult`, the search checkpoint, NNI's experiment folder).

NNI runs the one-shot strategy in-process with its sequential engine: no web server is started.
(If one were, NNI binds it on all interfaces; we pass a free loopback-chosen port all the same.)
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import json
import logging
import math
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nni_hrnas.data.common import smoke_mode
from nni_hrnas.run_folder import ARCH_FILE, RESULT_FILE, WEIGHTS_FILE, RunFolder, SearchResult

_logger = logging.getLogger("nni_hrnas.search")

#: Per-task search defaults. The real tasks follow the official code's settings (penalty, prune
#: every 5 epochs, 5 warm-up epochs, shrinking throughout, networks used as searched). The digits
#: tasks are ours, for a search of a few minutes on 2 CPU cores, chosen by measurement (README,
#: "Searched network vs the alternatives"): a stronger penalty, small batches and a learning
#: rate that moves BN gammas far enough in a few hundred steps; shrinking in the first 3 of 10
#: epochs, so that the last 7 train the final architecture (pruned up to the last epoch, the
#: network was returned untrained: half the uniform network's metric); and a per-path overhead
#: of 1 M MAC-equivalents (Eq. 7 adapted to latency) so that no thin kernel paths are kept that
#: cost little MACs but much CPU time.
_DIGITS_SEARCH = dict(lambda_=1e-3, prune_every=1, warmup_epochs=1.0, epochs=10, shrink_epochs=3, batch_size=8,
                      module_kwargs=dict(optimizer="adamw", learning_rate=1e-2, schedule="cosine"),
                      recalibration_batches=4, path_overhead=1e6)
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "cityscapes": dict(lambda_=1.4e-4, prune_every=5, warmup_epochs=5.0),
    "ade20k": dict(lambda_=1.4e-4, prune_every=5, warmup_epochs=5.0),
    "coco_keypoints": dict(lambda_=1e-6, prune_every=5, warmup_epochs=5.0),
    "imagenet": dict(lambda_=1.8e-4, prune_every=5, warmup_epochs=5.0),
    "digits_seg": dict(_DIGITS_SEARCH, epochs=15, data_sizes=(640, 192)),
    "digits_cls": dict(_DIGITS_SEARCH, data_sizes=(1280, 360)),
    "digits_kp": dict(_DIGITS_SEARCH, data_sizes=(640, 192)),
    # detection (issue 13): PointPillars trains 160 epochs; kitti_sim is the simulator at CPU scale
    "kitti": dict(lambda_=1.4e-4, prune_every=5, warmup_epochs=5.0),
    "kitti_sim": dict(_DIGITS_SEARCH, data_sizes=(160, 48), batch_size=4,
                      module_kwargs=dict(optimizer="adamw", learning_rate=3e-3, schedule="onecycle")),
}
SMOKE_EPOCHS = 2


class SearchError(ValueError):
    """A search setting is invalid; the message names it."""


@dataclass
class SearchSettings:
    """Everything one search needs. ``None`` means: the task's default (see :data:`TASK_DEFAULTS`)."""

    task: str
    preset: str | None = None
    space: dict[str, Any] | None = None  # overrides of the preset's config (``--space KEY=VALUE``)
    lambda_: float | None = None
    eps: float = 1e-3
    epochs: int | None = None
    prune_every: int | None = None
    warmup_epochs: float | None = None
    shrink_epochs: int | None = None
    target_macs: float | None = None
    seed: int = 0
    batch_size: int | None = None
    out: str | None = None
    resume: bool = False
    smoke: bool = field(default_factory=smoke_mode)
    data_root: str | None = None
    data_sizes: tuple[int, int] | None = None
    module_kwargs: dict[str, Any] | None = None
    recalibration_batches: int | None = None
    ema_decay: float = 0.999
    path_overhead: float | str | None = None  # MAC-equivalents, or "auto": measured here at latency_batch
    latency_batch: int = 1
    latency_runtime: str = "torch"  # where "auto" measures: torch, or onnxruntime (the deployment runtime)
    accelerator: str = "auto"  # where the search trains (Lightning Fabric): auto, cpu, cuda / gpu
    devices: int = 1  # processes per node, one per device, data parallel
    num_nodes: int = 1
    precision: str = "32-true"  # 32-true, bf16-mixed, 16-mixed (CUDA)
    channels_last: bool = True  # the live network and its inputs channels-last (faster, see bench_fabric.py)

    def __post_init__(self) -> None:
        from nni_hrnas.tasks.registry import get_task

        try:
            spec = get_task(self.task)
        except ValueError as exc:
            raise SearchError(str(exc)) from None
        defaults = TASK_DEFAULTS.get(self.task, {})
        for name in ("lambda_", "prune_every", "warmup_epochs", "shrink_epochs", "epochs", "batch_size", "data_sizes",
                     "path_overhead", "module_kwargs", "recalibration_batches"):
            if getattr(self, name) is None and name in defaults:
                setattr(self, name, defaults[name])
        if self.preset is None:
            self.preset = spec.default_preset
        if self.lambda_ is None:
            self.lambda_ = 1.4e-4
        if self.prune_every is None:
            self.prune_every = 5
        if self.warmup_epochs is None:
            self.warmup_epochs = 0.0
        if self.recalibration_batches is None:
            self.recalibration_batches = 10
        if self.path_overhead is None:
            self.path_overhead = 0.0
        if self.epochs is None:
            self.epochs = spec.default_epochs
        if self.smoke:
            self.epochs = min(self.epochs, SMOKE_EPOCHS)
            if self.shrink_epochs is not None:
                self.shrink_epochs = min(self.shrink_epochs, max(self.epochs - 1, 1))
            self.data_sizes = None
        self.validate()
        if self.path_overhead == "auto":
            from nni_hrnas.latency import measure_path_overhead

            self.path_overhead = measure_path_overhead(batch_size=self.latency_batch, runtime=self.latency_runtime)
            _logger.info("path overhead measured in %s at batch %d: %s MAC-equivalents per path",
                         self.latency_runtime, self.latency_batch, f"{self.path_overhead:,.0f}")

    def validate(self) -> None:
        from search_spaces.presets import PRESETS

        def bad(name: str, value: Any, allowed: str) -> SearchError:
            return SearchError(f"invalid {name}={value!r}: {allowed}")

        if self.preset not in PRESETS:
            raise bad("preset", self.preset, f"known presets: {', '.join(PRESETS)}")
        if self.space:
            from search_spaces import ConfigError, get_preset

            try:
                get_preset(self.preset, **copy.deepcopy(self.space))
            except (ConfigError, TypeError) as exc:
                raise SearchError(f"invalid --space: {exc}") from None
        if not _finite(self.lambda_) or self.lambda_ < 0:
            raise bad("lambda", self.lambda_, "expected a number >= 0")
        if not _finite(self.eps) or not 0 < self.eps < 1:
            raise bad("eps", self.eps, "expected 0 < eps < 1")
        if not _int(self.epochs) or self.epochs < 1:
            raise bad("epochs", self.epochs, "expected an integer >= 1")
        if not _int(self.prune_every) or self.prune_every < 1:
            raise bad("prune_every", self.prune_every, "expected an integer >= 1")
        if self.shrink_epochs is not None and (not _int(self.shrink_epochs) or self.shrink_epochs < 1):
            raise bad("shrink_epochs", self.shrink_epochs, "expected an integer >= 1 (epochs of pruning before the "
                      "final architecture is trained)")
        if not _finite(self.warmup_epochs) or self.warmup_epochs < 0:
            raise bad("warmup_epochs", self.warmup_epochs, "expected a number >= 0")
        if self.target_macs is not None and (not _finite(self.target_macs) or self.target_macs <= 0):
            raise bad("target_macs", self.target_macs, "expected a positive number of MACs")
        if not _int(self.seed) or self.seed < 0:
            raise bad("seed", self.seed, "expected an integer >= 0")
        if self.batch_size is not None and (not _int(self.batch_size) or self.batch_size < 1):
            raise bad("batch_size", self.batch_size, "expected an integer >= 1")
        if self.path_overhead != "auto" and (not _finite(self.path_overhead) or self.path_overhead < 0):
            raise bad("path_overhead", self.path_overhead, "expected a number of MAC-equivalents >= 0, or 'auto' "
                      "(measured on this machine)")
        if not _int(self.latency_batch) or self.latency_batch < 1:
            raise bad("latency_batch", self.latency_batch, "expected an integer >= 1")
        if self.latency_runtime not in ("torch", "onnxruntime"):
            raise bad("latency_runtime", self.latency_runtime, "expected torch or onnxruntime")
        if self.resume and not self.out:
            raise bad("resume", True, "--resume needs --out RUN_DIR (the folder of the search to continue)")
        try:
            self.device_settings().check_machine()
        except ValueError as exc:
            raise SearchError(str(exc)) from None

    def device_settings(self):
        """The :class:`~nni_hrnas.strategy.DeviceSettings` of this search (flags checked, not the machine)."""
        from nni_hrnas.strategy.loop import DeviceSettings

        try:
            return DeviceSettings(accelerator=self.accelerator, devices=self.devices, num_nodes=self.num_nodes,
                                  precision=self.precision, channels_last=self.channels_last)
        except ValueError as exc:
            raise SearchError(str(exc)) from None

    def run_dir(self) -> Path:
        if self.out:
            return Path(self.out)
        return Path("runs") / f"hrnas-{self.task}-{time.strftime('%Y%m%d-%H%M%S')}"


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_search(settings: SearchSettings, run_dir: Path | None = None,
                 on_epoch_end: Callable[[dict[str, Any]], None] | None = None):
    """The (space, evaluator, strategy) triple of a search, without running it."""
    from nni_hrnas.strategy import ProgressiveShrinking
    from nni_hrnas.tasks.registry import get_task
    from search_spaces import HRNASSpace

    spec = get_task(settings.task)
    input_size = spec.input_size(settings.smoke)
    overrides = copy.deepcopy(settings.space or {})
    space = HRNASSpace.from_preset(settings.preset, input_size=input_size, **overrides)
    if space.config.task != spec.kind:
        raise SearchError(f"invalid preset={settings.preset!r}: a {space.config.task} space, "
                          f"but task {settings.task!r} is {spec.kind}")
    if space.config.num_outputs != spec.num_outputs:
        space = HRNASSpace.from_preset(settings.preset, input_size=input_size, num_outputs=spec.num_outputs,
                                       **copy.deepcopy(settings.space or {}))
    dataset_kwargs = {"sizes": tuple(settings.data_sizes)} if settings.data_sizes else None
    torch.manual_seed(settings.seed)
    evaluator = spec.make_evaluator(None, epochs=settings.epochs, batch_size=settings.batch_size,
                                    root=settings.data_root, smoke=settings.smoke, seed=settings.seed,
                                    module_kwargs=settings.module_kwargs, dataset_kwargs=dataset_kwargs,
                                    enable_progress_bar=False, logger=False)
    strategy = ProgressiveShrinking(
        lambda_=settings.lambda_, eps=settings.eps, prune_every=settings.prune_every,
        warmup_epochs=settings.warmup_epochs, epochs=settings.epochs, shrink_epochs=settings.shrink_epochs,
        target_macs=settings.target_macs,
        input_size=input_size, ema_decay=settings.ema_decay, recalibration_batches=settings.recalibration_batches,
        seed=settings.seed, checkpoint_dir=run_dir, resume=settings.resume,
        path_overhead=float(settings.path_overhead), on_epoch_end=on_epoch_end, devices=settings.device_settings())
    return space, evaluator, strategy


def run_search(settings: SearchSettings,
               on_epoch_end: Callable[[dict[str, Any]], None] | None = None) -> SearchResult:
    """Run one search and write its run folder; returns what its ``result.json`` holds.

    ``on_epoch_end`` is the strategy's per-epoch callback (see :class:`ProgressiveShrinking`), e.g.
    to report intermediate values to an Optuna trial; what it raises stops the search and reaches
    the caller.
    """
    from nni.nas.experiment import NasExperiment

    run_dir = settings.run_dir()
    folder = RunFolder(run_dir)
    if folder.has_checkpoint() and not settings.resume:
        raise SearchError(f"invalid out={str(run_dir)!r}: it holds a search checkpoint; pass --resume to continue "
                          "it, or choose another --out (nothing was overwritten)")
    space, evaluator, strategy = build_search(settings, run_dir, on_epoch_end)
    if settings.target_macs is not None:  # refuse an unreachable budget before anything starts
        from nni_hrnas.strategy import minimum_macs

        floor = minimum_macs(space, strategy.input_size)
        if settings.target_macs < floor:
            raise SearchError(f"invalid target_macs={settings.target_macs:,.0f}: below what this network can reach; "
                              f"the stem, shortcuts and head alone cost {floor:,} MACs at input size "
                              f"{strategy.input_size} (every searched unit removed)")
    run_dir.mkdir(parents=True, exist_ok=True)
    experiment = NasExperiment(space, evaluator, strategy)
    # under torchrun / SLURM every process runs this function: only rank zero writes the run folder
    rank = int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0"))) if strategy.devices.world_size > 1 else 0
    nni_dir = folder.nni_dir if rank == 0 else Path(tempfile.mkdtemp(prefix=f"hrnas-nni-rank{rank}-"))
    experiment.config.experiment_working_directory = str(nni_dir.resolve())
    started = time.perf_counter()
    try:
        experiment.run(port=free_port())
        arch = experiment.export_top_models(formatter="dict")[0]
        model = experiment.export_top_models(formatter="instance")[0]
    finally:
        experiment.stop()
    result = dataclasses.replace(strategy.result, task=settings.task, preset=settings.preset, arch=dict(arch),
                                 config=dataclasses.asdict(space.config), run_seconds=time.perf_counter() - started,
                                 smoke=settings.smoke, run_dir=str(run_dir))
    if rank == 0 and strategy.is_global_zero:
        folder.save(arch, model, result)
    return result


def load_searched_model(run_dir: str | Path, fuse: bool = False) -> nn.Module:
    """The searched network of a run folder with its trained weights, in eval mode (see
    :meth:`RunFolder.load_model <nni_hrnas.run_folder.RunFolder.load_model>`; ``fuse``: its inference form)."""
    return RunFolder(run_dir).load_model(fuse=fuse)


def export_run(run_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, Any]:
    """Check a run folder reloads, and copy its arch, weights and result to ``out_dir``."""
    folder = RunFolder(run_dir)
    model = folder.load_model()
    result = folder.load_result()
    out = Path(out_dir) if out_dir is not None else folder.export_dir
    out.mkdir(parents=True, exist_ok=True)
    if out.resolve() != folder.path.resolve():
        folder.copy_to(out, result)
    params = sum(p.numel() for p in model.parameters())
    return {"out": str(out), "macs": result.macs, "params": params, "metric": result.metric,
            "arch": result.arch, "files": [path.name for path in folder.searched_files]}


# ---- command line ------------------------------------------------------------------------------


def add_search_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags of ``hrnas search`` (see the README, "Searching")."""
    parser.add_argument("--task", required=True, help="task name (e.g. digits_seg, cityscapes)")
    parser.add_argument("--preset", help="space preset (default: the task's)")
    parser.add_argument("--space", action="append", default=[], metavar="KEY=VALUE",
                        help="override a field of the preset's config, repeatable: transformer=false, "
                             "transformer.placement=all, kernels=3,5, granularity=8")
    parser.add_argument("--lambda", dest="lambda_", type=float, metavar="L", help="penalty weight (default: per task)")
    parser.add_argument("--eps", type=float, default=1e-3, help="remove units with |gamma| < eps (default 1e-3)")
    parser.add_argument("--target-macs", type=float, metavar="M", help=f"MACs budget; the result lands within 5%% of it ({RESULT_FILE} says above or below)")
    parser.add_argument("--epochs", type=int, help="search epochs (default: per task)")
    parser.add_argument("--prune-every", type=int, help="epochs between prune steps (default: per task)")
    parser.add_argument("--warmup-epochs", type=float, help="epochs over which lambda ramps up from 0")
    parser.add_argument("--shrink-epochs", type=int, metavar="N",
                        help="prune during the first N epochs, then train the final architecture for the rest "
                             "(default: per task; the real tasks shrink throughout, as the paper)")
    parser.add_argument("--batch-size", type=int, help="training batch size (default: the task's)")
    parser.add_argument("--path-overhead", metavar="MACS|auto",
                        help="fixed cost of each kernel path in MAC-equivalents, so that whole paths are removed "
                             "(Eq. 7 adapted to latency); 'auto' measures it on this machine (default: per task; "
                             "0, the paper's MAC-only cost, on the real tasks)")
    parser.add_argument("--latency-batch", type=int, default=1, help="batch size 'auto' measures at (default 1)")
    parser.add_argument("--latency-runtime", choices=("torch", "onnxruntime"), default="torch",
                        help="runtime 'auto' measures in: the one you deploy on (default torch)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root", help="data folder (default: the task's environment variable)")
    parser.add_argument("--out", help="run folder (default: runs/hrnas-TASK-TIME)")
    parser.add_argument("--resume", action="store_true", help="continue the search checkpointed in --out")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout, logs on stderr")
    add_device_arguments(parser)
    return parser


def add_device_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--accelerator --devices --num-nodes --precision``: where searches train (Lightning Fabric)."""
    from nni_hrnas.strategy.loop import ACCELERATORS, PRECISIONS

    group = parser.add_argument_group("devices (Lightning Fabric)")
    group.add_argument("--accelerator", default="auto", help=f"{', '.join(ACCELERATORS)} (default auto: "
                       "the GPU when there is one)")
    group.add_argument("--devices", type=int, default=1, help="processes per node, one per device, training "
                       "data parallel on the task's batch size each (default 1)")
    group.add_argument("--num-nodes", type=int, default=1, help="machines; start each node's processes with "
                       "torchrun (default 1)")
    group.add_argument("--precision", default="32-true", help=f"{', '.join(PRECISIONS)} (default 32-true)")
    group.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                       help="keep the network in the default (NCHW) memory layout; channels-last is faster here")
    return parser


def device_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The device flags of ``args`` as :class:`SearchSettings` keyword arguments."""
    return {name: getattr(args, name) for name in ("accelerator", "devices", "num_nodes", "precision", "channels_last")
            if getattr(args, name, None) is not None}


def device_settings(args: argparse.Namespace, check_machine: bool = True):
    """The :class:`~nni_hrnas.strategy.DeviceSettings` of the device flags, checked against this machine.

    Raises ``SearchError`` naming the flag and the fix (before anything trains).
    """
    from nni_hrnas.strategy.loop import DeviceSettings

    try:
        settings = DeviceSettings(**device_kwargs(args))
        if check_machine:
            settings.check_machine()
    except ValueError as exc:
        raise SearchError(str(exc)) from None
    return settings


def add_export_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The arguments of ``hrnas export``."""
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by hrnas search")
    parser.add_argument("--out", help=f"where to write {ARCH_FILE}, {WEIGHTS_FILE}, {RESULT_FILE} "
                                      "(default: RUN_DIR/export)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    return parser


@contextlib.contextmanager
def _stdout_to_stderr():
    """Route everything written to stdout (file descriptor 1 included) to stderr."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _setup_logging() -> None:
    from nni_hrnas.logs import setup_cli_logging

    setup_cli_logging()


def _space_arg(items: list[str] | None) -> dict[str, Any] | None:
    from search_spaces.config import ConfigError, parse_space_overrides

    try:
        return parse_space_overrides(items) if items else None
    except ConfigError as exc:
        raise SearchError(f"invalid --space: {exc}") from None


def _overhead_arg(text: str | None) -> float | str | None:
    if text is None:
        return None
    text = str(text).strip().lower()
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise SearchError(f"invalid path_overhead={text!r}: expected a number of MAC-equivalents or 'auto'") from None


def cmd_search(args: argparse.Namespace) -> int:
    """``hrnas search``: returns the exit status (0 done, 1 failed, 2 bad input)."""
    from nni_hrnas.strategy import CheckpointError, SearchDiverged

    _setup_logging()
    try:
        settings = SearchSettings(
            task=args.task, preset=args.preset, space=_space_arg(getattr(args, "space", None)),
            lambda_=args.lambda_, eps=args.eps, epochs=args.epochs,
            prune_every=getattr(args, "prune_every", None), warmup_epochs=getattr(args, "warmup_epochs", None),
            shrink_epochs=getattr(args, "shrink_epochs", None),
            target_macs=args.target_macs, seed=args.seed, batch_size=getattr(args, "batch_size", None),
            out=args.out, resume=args.resume, data_root=getattr(args, "data_root", None),
            path_overhead=_overhead_arg(getattr(args, "path_overhead", None)),
            latency_batch=getattr(args, "latency_batch", 1),
            latency_runtime=getattr(args, "latency_runtime", "torch"), **device_kwargs(args))
        with _stdout_to_stderr():
            result = run_search(settings)
    except (SearchError, CheckpointError, ValueError, FileNotFoundError) as exc:
        print(f"hrnas search: error: {exc}", file=sys.stderr)
        return 2
    except SearchDiverged as exc:
        print(f"hrnas search: the search diverged: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(f"searched {settings.task}: {result.macs:,} MACs ({result.macs_max:,} before), "
              f"{result.params:,} params, {result.metric_name} {result.metric:.4f}, "
              f"{result.search_seconds:.0f} s; run folder {result.run_dir}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """``hrnas export``: returns the exit status."""
    try:
        info = export_run(args.run_dir, args.out)
    except (FileNotFoundError, KeyError, ValueError, RuntimeError) as exc:
        print(f"hrnas export: error: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "json", False):
        print(json.dumps(info))
    else:
        print(f"exported {args.run_dir} to {info['out']}: {info['macs']:,} MACs, {info['params']:,} params")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m nni_hrnas.search {search,export} ...`` until the ``hrnas`` command wires these."""
    parser = argparse.ArgumentParser(prog="python -m nni_hrnas.search")
    sub = parser.add_subparsers(dest="command", required=True)
    add_search_arguments(sub.add_parser("search", help="run one HR-NAS search"))
    add_export_arguments(sub.add_parser("export", help="export a searched run folder"))
    args = parser.parse_args(argv)
    return cmd_search(args) if args.command == "search" else cmd_export(args)


if __name__ == "__main__":
    sys.exit(main())
