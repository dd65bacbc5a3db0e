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
import inspect
import json
import logging
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nni_hrnas.data.common import smoke_mode
from nni_hrnas.logs import setup_cli_logging
from nni_hrnas.run_folder import ARCH_FILE, RESULT_FILE, WEIGHTS_FILE, RunFolder, SearchResult
from nni_hrnas.settings import (
    Check,
    add_arguments,
    forwarded,
    forwarded_names,
    from_args,
    integer,
    is_number,
    number,
    one_of,
    positive,
    setting,
    settings_of,
)
from nni_hrnas.settings import check as check_settings
from nni_hrnas.strategy import (
    CheckpointError,
    DeviceSettings,
    ProgressiveShrinking,
    SearchDiverged,
    minimum_macs,
    shrink_end,
)
from nni_hrnas.strategy.loop import ACCELERATORS, PRECISIONS
from nni_hrnas.tasks.registry import get_task
from search_spaces import ConfigError, HRNASSpace, get_preset
from search_spaces.config import parse_space_overrides
from search_spaces.costs import UNIT_COSTS
from search_spaces.presets import PRESETS

_logger = logging.getLogger("nni_hrnas.search")

SMOKE_EPOCHS = 2
DEVICES = "devices (Lightning Fabric)"  # the flag group of the device settings


class SearchError(ValueError):
    """A search setting is invalid; the message names it."""


def _space_arg(items: list[str] | None) -> dict[str, Any] | None:

    try:
        return parse_space_overrides(items) if items else None
    except ConfigError as exc:
        raise SearchError(f"invalid --space: {exc}") from None


def space_setting() -> Any:
    """The ``--space KEY=VALUE`` setting (repeatable), declared once for every command that searches."""
    return setting(
        None,
        action="append",
        metavar="KEY=VALUE",
        from_cli=_space_arg,
        help="override a field of the preset's config, repeatable: transformer=false, "
        "transformer.placement=all, kernels=3,5, granularity=8",
    )


def _overhead_arg(text: str | float | None) -> float | str | None:
    if text is None or isinstance(text, (int, float)) and not isinstance(text, bool):
        return text
    text = str(text).strip().lower()
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise SearchError(
            f"invalid path_overhead={text!r}: expected a number of MAC-equivalents or 'auto'"
        ) from None


_OVERHEAD = Check(
    lambda v: v == "auto" or is_number(v) and v >= 0,
    "expected a number of MAC-equivalents >= 0, or 'auto' (measured on this machine)",
)


#: DeviceSettings' defaults, the search flags' defaults
_DEVICE_DEFAULTS = {f.name: f.default for f in dataclasses.fields(DeviceSettings)}


@dataclass(kw_only=True)
class SearchSettings:
    """Everything one search needs, each setting declared once (its flag, help and check included).

    ``None`` means: the task's default (its record's ``search``, :class:`~nni_hrnas.tasks.SearchDefaults`),
    else the strategy's own default (:func:`strategy_defaults`). ``forward=True`` settings are the
    :class:`~nni_hrnas.strategy.ProgressiveShrinking` arguments of the same name.
    """

    task: str = setting(help="task name (e.g. digits_seg, cityscapes)")
    preset: str | None = setting(None, help="space preset (default: the task's)")
    space: dict[str, Any] | None = space_setting()
    lambda_: float | None = setting(
        None,
        type=float,
        metavar="L",
        check=number(0),
        forward=True,
        help="penalty weight (default: per task)",
    )
    eps: float | None = setting(
        None,
        type=float,
        forward=True,
        check=Check(lambda v: is_number(v) and 0 < v < 1, "expected 0 < eps < 1"),
        help="remove units with |gamma| < eps (default: per task, else the strategy's: 1e-3)",
    )
    target_macs: float | None = setting(
        None,
        type=float,
        metavar="M",
        forward=True,
        check=positive("expected a positive number of MACs").or_none(),
        help=f"MACs budget; the result lands within 5%% of it ({RESULT_FILE} says above or below)",
    )
    epochs: int | None = setting(
        None, type=int, check=integer(1), forward=True, help="search epochs (default: per task)"
    )
    prune_every: int | None = setting(
        None, type=int, check=integer(1), forward=True, help="epochs between prune steps (default: per task)"
    )
    warmup_epochs: float | None = setting(
        None, type=float, check=number(0), forward=True, help="epochs over which lambda ramps up from 0"
    )
    shrink_epochs: int | None = setting(
        None,
        type=int,
        metavar="N",
        forward=True,
        check=integer(1, "epochs of pruning before the final architecture is trained").or_none(),
        help="prune during the first N epochs, then train the final architecture for the rest "
        "(default: per task; the real tasks shrink throughout, as the paper)",
    )
    final_lr_scale: float | None = setting(
        None,
        type=float,
        metavar="K",
        forward=True,
        check=positive("expected a positive factor").or_none(),
        help="train the final architecture (the epochs after --shrink-epochs) with the task's learning "
        "rates times K: it starts from the supernet's weights, as a pruned network is fine-tuned "
        "(default: per task; 0.5 on the digits tasks, 1 elsewhere)",
    )
    batch_size: int | None = setting(
        None, type=int, check=integer(1).or_none(), help="training batch size (default: the task's)"
    )
    path_overhead: float | str | None = setting(
        None,
        metavar="MACS|auto",
        from_cli=_overhead_arg,
        check=_OVERHEAD,
        forward=True,
        help="fixed cost of each kernel path in MAC-equivalents, so that whole paths are removed "
        "(Eq. 7 adapted to latency); 'auto' measures it on this machine (default: per task; "
        "0, the paper's MAC-only cost, on the real tasks)",
    )
    unit_cost: str | None = setting(
        None,
        metavar="exact|paper",
        check=one_of(*UNIT_COSTS),
        forward=True,
        help="what a depthwise channel's penalty weight counts: exact, the MACs removing it saves "
        "(default; as the official code), or paper, its depthwise conv alone (Eq. 6 as printed)",
    )
    elementwise_weight: float | None = setting(
        None,
        type=float,
        metavar="W",
        check=number(0).or_none(),
        forward=True,
        help="MAC-equivalents of each BN and activation element a unit carries, memory-bound work "
        "that MACs do not count (default 0, the paper's MAC-only cost; "
        "benchmarks/bench_elementwise_weight.py fits it here)",
    )
    min_path_width: int | None = setting(
        None,
        type=int,
        metavar="N",
        check=integer(1, "the fewest channels a kernel path keeps").or_none(),
        forward=True,
        help="a kernel path (transformer) that pruning would leave with fewer than N channels "
        "(tokens) is removed whole: on a CPU a thin path costs nearly a wide one's time "
        "(default 1, the paper's fine-grained shrinking; README: a tenth of digits_seg's supernet)",
    )
    latency_batch: int = setting(
        1, type=int, check=integer(1), help="batch size 'auto' measures at (default 1)"
    )
    latency_runtime: str = setting(
        "torch",
        choices=("torch", "onnxruntime"),
        check=one_of("torch", "onnxruntime"),
        help="runtime 'auto' measures in: the one you deploy on (default torch)",
    )
    seed: int = setting(0, type=int, check=integer(0), forward=True)
    data_root: str | None = setting(None, help="data folder (default: the task's environment variable)")
    out: str | None = setting(None, help="run folder (default: runs/hrnas-TASK-TIME)")
    resume: bool = setting(
        False, action="store_true", forward=True, help="continue the search checkpointed in --out"
    )
    # set from Python only: the task's record, or a caller such as bench_fabric.py, gives them
    smoke: bool = setting(default_factory=smoke_mode, cli=False)
    data_sizes: tuple[int, int] | None = setting(None, cli=False)  # (train, val) samples of the CPU tasks
    module_kwargs: dict[str, Any] | None = setting(None, cli=False)  # overrides of the task's training recipe
    recalibration_batches: int | None = setting(None, cli=False, forward=True)
    ema_decay: float | None = setting(None, cli=False, forward=True)
    # where the search trains (Lightning Fabric); checked by DeviceSettings
    accelerator: str = setting(
        _DEVICE_DEFAULTS["accelerator"],
        group=DEVICES,
        help=f"{', '.join(ACCELERATORS)} (default auto: the GPU when there is one)",
    )
    devices: int = setting(
        _DEVICE_DEFAULTS["devices"],
        type=int,
        group=DEVICES,
        help="processes per node, one per device, training data parallel on the task's batch "
        "size each (default 1)",
    )
    num_nodes: int = setting(
        _DEVICE_DEFAULTS["num_nodes"],
        type=int,
        group=DEVICES,
        help="machines; start each node's processes with torchrun (default 1)",
    )
    precision: str = setting(
        _DEVICE_DEFAULTS["precision"], group=DEVICES, help=f"{', '.join(PRECISIONS)} (default 32-true)"
    )
    channels_last: bool = setting(
        _DEVICE_DEFAULTS["channels_last"],
        flag="--no-channels-last",
        action="store_false",
        group=DEVICES,
        help="keep the network in the default (NCHW) memory layout; channels-last is faster here",
    )

    def __post_init__(self) -> None:
        try:
            spec = get_task(self.task)
        except ValueError as exc:
            raise SearchError(str(exc)) from None
        if self.preset is None:
            self.preset = spec.default_preset
        self.space = spec.space_overrides(self.preset, self.space) or None
        final_lr_scale_given = self.final_lr_scale is not None
        for defaults in (spec.search.resolve(spec.train), strategy_defaults()):
            for name, value in defaults.items():
                if getattr(self, name) is None:
                    setattr(self, name, copy.deepcopy(value))
        if self.smoke:
            self.epochs = min(self.epochs, SMOKE_EPOCHS)
            if self.shrink_epochs is not None:
                self.shrink_epochs = min(self.shrink_epochs, max(self.epochs - 1, 1))
            self.data_sizes = None
        if not final_lr_scale_given and not self.trains_final_architecture():
            self.final_lr_scale = 1.0  # the task's default scales epochs that this search does not have
        self.validate()
        if self.path_overhead == "auto":
            from nni_hrnas.latency import measure_path_overhead

            self.path_overhead = measure_path_overhead(
                batch_size=self.latency_batch, runtime=self.latency_runtime
            )
            _logger.info(
                "path overhead measured in %s at batch %d: %s MAC-equivalents per path",
                self.latency_runtime,
                self.latency_batch,
                f"{self.path_overhead:,.0f}",
            )

    def validate(self) -> None:
        """Each setting's declared check, then those that involve more than one (preset and space,
        resume and out, the devices against this machine): a :class:`SearchError` naming the first bad one."""

        if self.preset not in PRESETS:
            raise SearchError(f"invalid preset={self.preset!r}: known presets: {', '.join(PRESETS)}")
        if self.space:
            try:
                get_preset(self.preset, **copy.deepcopy(self.space))
            except (ConfigError, TypeError) as exc:
                raise SearchError(f"invalid --space: {exc}") from None
        check_settings(self, SearchError)
        if self.final_lr_scale not in (None, 1.0) and not self.trains_final_architecture():
            raise SearchError(
                f"invalid final_lr_scale={self.final_lr_scale}: it scales the epochs that train the final "
                f"architecture, and this search shrinks for all {self.epochs}; set --shrink-epochs below "
                "--epochs, or leave --final-lr-scale out"
            )
        if self.resume and not self.out:
            raise SearchError(
                "invalid resume=True: --resume needs --out RUN_DIR (the folder of the search to continue)"
            )
        try:
            self.device_settings().check_machine()
        except ValueError as exc:
            raise SearchError(str(exc)) from None

    def trains_final_architecture(self) -> bool:
        """Whether epochs are left after shrinking (``shrink_epochs`` below ``epochs``) to train the final
        architecture: the epochs ``final_lr_scale`` applies to. False for values that are not numbers
        (their own check names them)."""
        try:
            return shrink_end(self.shrink_epochs, self.epochs) < self.epochs
        except TypeError:
            return False

    def strategy_kwargs(self) -> dict[str, Any]:
        """The :class:`~nni_hrnas.strategy.ProgressiveShrinking` arguments these settings give by name."""
        return forwarded(self)

    def device_settings(self) -> DeviceSettings:
        """The :class:`~nni_hrnas.strategy.DeviceSettings` of this search (flags checked, not the machine)."""
        try:
            return DeviceSettings(**{name: getattr(self, name) for name in _device_names()})
        except ValueError as exc:
            raise SearchError(str(exc)) from None

    def run_dir(self) -> Path:
        if self.out:
            return Path(self.out)
        return Path("runs") / f"hrnas-{self.task}-{time.strftime('%Y%m%d-%H%M%S')}"


def _device_names() -> list[str]:
    """The settings of the devices group: ``DeviceSettings`` arguments of the same names."""
    return [f.name for f, meta in settings_of(SearchSettings) if meta.group == DEVICES]


def strategy_defaults() -> dict[str, Any]:
    """The strategy's own defaults of the forwarded settings (read from its signature, not repeated here)."""
    parameters = inspect.signature(ProgressiveShrinking).parameters
    return {name: parameters[name].default for name in forwarded_names(SearchSettings)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def search_space(settings: SearchSettings) -> HRNASSpace:
    """The space ``settings`` search: the preset with the task's and the ``--space`` overrides
    (:meth:`~nni_hrnas.tasks.TaskSpec.space_overrides`), sized for the task's input and outputs."""
    spec = get_task(settings.task)
    input_size = spec.input_size(settings.smoke)
    space = HRNASSpace.from_preset(
        settings.preset, input_size=input_size, **copy.deepcopy(settings.space or {})
    )
    if space.config.task != spec.kind:
        raise SearchError(
            f"invalid preset={settings.preset!r}: a {space.config.task} space, "
            f"but task {settings.task!r} is {spec.kind}"
        )
    if space.config.num_outputs != spec.num_outputs:
        space = HRNASSpace.from_preset(
            settings.preset,
            input_size=input_size,
            num_outputs=spec.num_outputs,
            **copy.deepcopy(settings.space or {}),
        )
    return space


def build_search(
    settings: SearchSettings,
    run_dir: Path | None = None,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
):
    """The (space, evaluator, strategy) triple of a search, without running it."""
    spec = get_task(settings.task)
    input_size = spec.input_size(settings.smoke)
    space = search_space(settings)
    dataset_kwargs = {"sizes": tuple(settings.data_sizes)} if settings.data_sizes else None
    torch.manual_seed(settings.seed)
    evaluator = spec.make_evaluator(
        None,
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        root=settings.data_root,
        smoke=settings.smoke,
        seed=settings.seed,
        module_kwargs=settings.module_kwargs,
        dataset_kwargs=dataset_kwargs,
        enable_progress_bar=False,
        logger=False,
    )
    strategy = ProgressiveShrinking(
        **settings.strategy_kwargs(),
        input_size=input_size,
        checkpoint_dir=run_dir,
        on_epoch_end=on_epoch_end,
        devices=settings.device_settings(),
    )
    return space, evaluator, strategy


def run_search(
    settings: SearchSettings, on_epoch_end: Callable[[dict[str, Any]], None] | None = None
) -> SearchResult:
    """Run one search and write its run folder; returns what its ``result.json`` holds.

    ``on_epoch_end`` is the strategy's per-epoch callback (see :class:`ProgressiveShrinking`), e.g.
    to report intermediate values to an Optuna trial; what it raises stops the search and reaches
    the caller.
    """
    from nni.nas.experiment import NasExperiment

    run_dir = settings.run_dir()
    folder = RunFolder(run_dir)
    if folder.has_checkpoint() and not settings.resume:
        raise SearchError(
            f"invalid out={str(run_dir)!r}: it holds a search checkpoint; pass --resume to continue "
            "it, or choose another --out (nothing was overwritten)"
        )
    space, evaluator, strategy = build_search(settings, run_dir, on_epoch_end)
    if settings.target_macs is not None:  # refuse an unreachable budget before anything starts
        floor = minimum_macs(space, strategy.input_size)
        if settings.target_macs < floor:
            raise SearchError(
                f"invalid target_macs={settings.target_macs:,.0f}: below what this network can reach; "
                f"the stem, shortcuts and head alone cost {floor:,} MACs at input size "
                f"{strategy.input_size} (every searched unit removed)"
            )
    run_dir.mkdir(parents=True, exist_ok=True)
    experiment = NasExperiment(space, evaluator, strategy)
    # under torchrun / SLURM every process runs this function: only rank zero writes the run folder
    rank = (
        int(os.environ.get("RANK", os.environ.get("SLURM_PROCID", "0")))
        if strategy.devices.world_size > 1
        else 0
    )
    nni_dir = folder.nni_dir if rank == 0 else Path(tempfile.mkdtemp(prefix=f"hrnas-nni-rank{rank}-"))
    experiment.config.experiment_working_directory = str(nni_dir.resolve())
    started = time.perf_counter()
    try:
        experiment.run(port=free_port())
        arch = experiment.export_top_models(formatter="dict")[0]
        model = experiment.export_top_models(formatter="instance")[0]
    finally:
        experiment.stop()
    result = dataclasses.replace(
        strategy.result,
        task=settings.task,
        preset=settings.preset,
        arch=dict(arch),
        config=dataclasses.asdict(space.config),
        run_seconds=time.perf_counter() - started,
        smoke=settings.smoke,
        run_dir=str(run_dir),
    )
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
    return {
        "out": str(out),
        "macs": result.macs,
        "params": params,
        "metric": result.metric,
        "arch": result.arch,
        "files": [path.name for path in folder.searched_files],
    }


# ---- command line ------------------------------------------------------------------------------


def add_search_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags of ``hrnas search`` (see the README, "Searching"): one per :class:`SearchSettings` setting."""
    add_arguments(parser, SearchSettings, groups=(None,))
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout, logs on stderr")
    return add_device_arguments(parser)


def add_device_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--accelerator --devices --num-nodes --precision --no-channels-last``: where searches train (Lightning Fabric)."""
    return add_arguments(parser, SearchSettings, groups=(DEVICES,))


def device_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The device flags of ``args`` as :class:`SearchSettings` keyword arguments."""
    return {name: value for name, value in search_kwargs(args).items() if name in _device_names()}


def search_kwargs(args: argparse.Namespace | dict[str, Any], *, public: bool = False) -> dict[str, Any]:
    """:class:`SearchSettings` keyword arguments from parsed flags (or, ``public=True``, from a mapping
    keyed by the settings' public names, ``lambda`` for ``lambda_``: an NNI tuner's parameters)."""
    return from_args(SearchSettings, args, public=public)


def device_settings(args: argparse.Namespace, check_machine: bool = True) -> DeviceSettings:
    """The :class:`~nni_hrnas.strategy.DeviceSettings` of the device flags, checked against this machine.

    Raises ``SearchError`` naming the flag and the fix (before anything trains).
    """
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
    parser.add_argument(
        "--out", help=f"where to write {ARCH_FILE}, {WEIGHTS_FILE}, {RESULT_FILE} (default: RUN_DIR/export)"
    )
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
    setup_cli_logging()


def cmd_search(args: argparse.Namespace) -> int:
    """``hrnas search``: returns the exit status (0 done, 1 failed, 2 bad input)."""
    _setup_logging()
    try:
        settings = SearchSettings(**search_kwargs(args))
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
        print(
            f"searched {settings.task}: {result.macs:,} MACs ({result.macs_max:,} before), "
            f"{result.params:,} params, {result.metric_name} {result.metric:.4f}, "
            f"{result.search_seconds:.0f} s; run folder {result.run_dir}"
        )
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
