"""``hrnas train``: train one fixed network with a task's recipe and write a run folder.

The network is an architecture of the task's space (``--arch ARCH.json``), a preset's supernet at
full width (``--preset P``) or a Table 8 plug-in network (``--model M``), each with ``--space``
overrides where a space applies; ``--init RUN_DIR`` starts from a run folder's weights (fine-tuning
a searched network, as the paper retrains). The run folder has the layout of ``hrnas search``'s
(:mod:`nni_hrnas.run_folder`), so ``hrnas export``, ``hrnas report`` and ``load_searched_model``
read it; ``result.json`` says ``strategy: "train"``.

A composition module (like :mod:`nni_hrnas.search`): it builds the network from the space or the
plug-in presets and trains it through :func:`nni_hrnas.baselines.train_network`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from nni_hrnas.baselines import RECIPES, recipe_datasets, train_network
from nni_hrnas.data.common import smoke_mode
from nni_hrnas.run_folder import RunFolder, RunFolderError, SearchResult, load_weights
from search_spaces import (
    ConfigError,
    HRNASConfig,
    HRNASNetwork,
    choice_maxima,
    get_preset,
    load_arch,
    validate_sample,
)
from search_spaces.config import parse_space_overrides
from search_spaces.presets import PLUGIN_PRESETS, PRESETS

if TYPE_CHECKING:
    from nni_hrnas.tasks.registry import TaskSpec

#: ``result.json``'s ``strategy`` of a run folder written by ``hrnas train``
STRATEGY = "train"


class TrainError(ValueError):
    """The network or the training cannot be set up as asked; the message says why and the fix."""


@dataclass
class TrainSettings:
    """What ``hrnas train`` trains and how; exactly one of ``arch``, ``preset``, ``model`` (or none
    with ``init``: the run folder's own network)."""

    task: str
    epochs: int
    out: str
    arch: str | None = None  # an arch.json of the task's preset (with ``space`` applied)
    preset: str | None = None  # an HR-NAS preset: its supernet at full width
    model: str | None = None  # a plug-in network (PLUGIN_PRESETS)
    space: list[str] = field(default_factory=list)  # --space KEY=VALUE items
    init: str | None = None  # a run folder whose weights the network starts from
    seed: int = 0
    recipe: str = "task"

    def __post_init__(self) -> None:
        from nni_hrnas.tasks.registry import get_task

        try:
            self.spec = get_task(self.task)
        except ValueError as exc:
            raise TrainError(str(exc)) from None
        given = [f"--{n}" for n in ("arch", "preset", "model") if getattr(self, n) is not None]
        if len(given) > 1:
            raise TrainError(
                f"{' and '.join(given)} both name the network: give one of --arch, --preset, --model"
            )
        if not given and self.init is None:
            raise TrainError(
                "no network given: pass --arch ARCH.json, --preset P, --model M or --init RUN_DIR"
            )
        if self.model is not None and self.space:
            raise TrainError(
                f"--space overrides an HR-NAS space; --model {self.model} is a fixed network: drop --space"
            )
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise TrainError(f"invalid epochs={self.epochs!r}: expected an integer >= 1")
        if self.recipe not in RECIPES:
            raise TrainError(f"invalid recipe={self.recipe!r}: allowed: {', '.join(RECIPES)}")


@dataclass
class FixedNetwork:
    """A network to train and what rebuilds it: ``config`` (the space's or the plug-in network's, as
    a dict), ``arch`` (its choice labels; empty for a plug-in network), ``model`` (the plug-in preset)."""

    net: nn.Module
    name: str
    config: dict[str, Any]
    arch: dict[str, int]
    model: str | None = None


def _task_sized(config: Any, spec: TaskSpec) -> Any:
    """``config`` at the task's input size and outputs (the presets are the paper's sizes)."""
    return config.replace(input_size=spec.input_size(), num_outputs=spec.num_outputs)


def plugin_network(name: str, spec: TaskSpec) -> FixedNetwork:
    """The plug-in network ``name`` sized for ``spec``'s task; refused when its head does not fit."""
    if name not in PLUGIN_PRESETS:
        raise TrainError(f"unknown model {name!r}; plug-in networks: {', '.join(sorted(PLUGIN_PRESETS))}")
    config = _task_sized(PLUGIN_PRESETS[name], spec)
    if config.task != spec.kind:
        raise TrainError(
            f"model {name!r} is a {config.task} network, but task {spec.name!r} is {spec.kind}: "
            f"pick a {spec.kind} one ({', '.join(sorted(n for n, c in PLUGIN_PRESETS.items() if c.task == spec.kind))})"
        )
    return FixedNetwork(config.build(), name, dataclasses.asdict(config), {}, model=name)


def space_config(spec: TaskSpec, preset: str | None, space: list[str]) -> HRNASConfig:
    """The HR-NAS config of ``preset`` (default: the task's) with ``--space`` items, sized for the task."""
    preset = preset or spec.default_preset
    if preset not in PRESETS:
        raise TrainError(f"unknown preset {preset!r}; HR-NAS presets: {', '.join(PRESETS)}")
    try:
        config = _task_sized(
            get_preset(preset, **spec.space_overrides(preset, parse_space_overrides(space))), spec
        )
    except (ConfigError, TypeError) as exc:
        raise TrainError(f"invalid --space: {exc}") from None
    if config.task != spec.kind:
        raise TrainError(
            f"preset {preset!r} is a {config.task} space, but task {spec.name!r} is {spec.kind}: "
            f"use --preset {spec.default_preset}"
        )
    return config


def build_fixed(settings: TrainSettings) -> FixedNetwork:
    """The network ``settings`` name, with fresh weights (``--init`` is applied by :func:`run_train`)."""
    spec = settings.spec
    if settings.model is not None:
        return plugin_network(settings.model, spec)
    if settings.arch is None and settings.preset is None:  # --init alone: the run folder's network
        return _run_network(Path(settings.init), spec)
    config = space_config(spec, settings.preset, settings.space)
    if settings.arch is not None:
        arch = load_arch(settings.arch, config)
        name = f"{Path(settings.arch).name} of {settings.preset or spec.default_preset}"
    else:
        arch = validate_sample(config, choice_maxima(config))
        name = settings.preset
    return FixedNetwork(HRNASNetwork(config, arch), name, dataclasses.asdict(config), arch)


def _run_network(run_dir: Path, spec: TaskSpec) -> FixedNetwork:
    """A run folder's network rebuilt from its ``result.json`` (weights not loaded)."""
    folder = RunFolder(run_dir)
    result = folder.load_result()
    if result.task is not None and result.task != spec.name:
        raise TrainError(f"--init {run_dir} is a run of task {result.task!r}, not {spec.name!r}")
    model = result.extra.get("model")
    if model is not None:
        return plugin_network(str(model), spec)
    if result.config is None:
        raise TrainError(
            f"--init {run_dir}: its result.json records no space config; pass --arch or --preset"
        )
    config = HRNASConfig(**result.config)
    arch = load_arch(folder.arch_path, config)
    return FixedNetwork(
        HRNASNetwork(config, arch), f"{run_dir.name} retrained", dataclasses.asdict(config), arch
    )


def load_init(net: nn.Module, run_dir: str | Path) -> None:
    """Load a run folder's weights into ``net``; a one-line :class:`TrainError` when they do not fit."""
    folder = RunFolder(run_dir)
    if not folder.weights_path.is_file():
        raise TrainError(
            f"--init {run_dir}: {folder.weights_path.name} is missing (not a finished run folder)"
        )
    try:
        net.load_state_dict(load_weights(folder.weights_path), strict=True)
    except RuntimeError as exc:
        detail = (str(exc).strip().splitlines() or [""])[0][:160]
        raise TrainError(
            f"--init {run_dir}: its weights do not fit this network ({detail}); train the run's own "
            f"network with --init alone, or pass the --arch and --space it was searched with"
        ) from None


def run_train(settings: TrainSettings) -> SearchResult:
    """Build, (initialise,) train and validate the network; write and return its run folder's result."""
    return train_fixed(settings)[1]


def train_fixed(settings: TrainSettings) -> tuple[FixedNetwork, SearchResult]:
    """:func:`run_train`, also returning the trained network."""
    started = time.perf_counter()
    spec = settings.spec
    torch.manual_seed(settings.seed)
    fixed = build_fixed(settings)  # bad input is refused here, before any data is made
    if settings.init is not None:
        load_init(fixed.net, settings.init)
    datasets = recipe_datasets(settings.task, settings.recipe, settings.seed)
    run = train_network(
        settings.task,
        fixed.net,
        settings.epochs,
        name=fixed.name,
        seed=settings.seed,
        datasets=datasets,
        recipe=settings.recipe,
        arch=fixed.arch,
    )
    smoke = smoke_mode()
    extra: dict[str, Any] = {
        "space": list(settings.space),
        "recipe": settings.recipe,
        "train_seconds": run.seconds,
    }
    if fixed.model is not None:
        extra["model"] = fixed.model  # RunFolder.load_model rebuilds a plug-in network from it
    if settings.init is not None:
        extra["init"] = str(settings.init)
    result = SearchResult(
        macs=run.macs,
        params=run.params,
        metric=run.metric,
        metric_name=spec.metric,
        arch=fixed.arch,
        epochs=1 if smoke else settings.epochs,  # the task's evaluator trains one epoch under smoke
        seed=settings.seed,
        input_size=tuple(spec.input_size()),
        strategy=STRATEGY,
        task=settings.task,
        preset=fixed.model or settings.preset or spec.default_preset,
        config=fixed.config,
        run_seconds=time.perf_counter() - started,
        smoke=smoke,
        run_dir=str(settings.out),
        extra=extra,
    )
    RunFolder(settings.out).save(fixed.arch, fixed.net, result)
    return fixed, result


# ---- command line ------------------------------------------------------------------------------


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags of ``hrnas train``."""
    parser.add_argument("--task", required=True, help="task name (e.g. digits_seg, digits_cls)")
    parser.add_argument("--arch", help="arch.json of the task's space (e.g. a search's run folder's)")
    parser.add_argument("--preset", help="an HR-NAS preset: its supernet at full width")
    parser.add_argument("--model", help=f"a plug-in network (Table 8): {', '.join(sorted(PLUGIN_PRESETS))}")
    parser.add_argument(
        "--space",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a field of the preset's config, repeatable (as hrnas search --space)",
    )
    parser.add_argument("--epochs", type=int, required=True, help="training epochs (one under HRNAS_SMOKE)")
    parser.add_argument("--out", required=True, help="run folder to write")
    parser.add_argument(
        "--init", metavar="RUN_DIR", help="start from this run folder's weights (alone: retrain its network)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--recipe", default="task", help="task: the task's training recipe (default); search: the search's"
    )
    parser.add_argument("--json", action="store_true", help="print result.json's object on stdout")
    return parser


def settings_from_args(args: argparse.Namespace) -> TrainSettings:
    """:class:`TrainSettings` of parsed ``hrnas train`` flags."""
    names = [f.name for f in dataclasses.fields(TrainSettings)]
    return TrainSettings(**{n: getattr(args, n) for n in names})


def cmd_train(args: argparse.Namespace) -> int:
    """``hrnas train``: 0 done, 2 bad input (one line on stderr)."""
    from nni_hrnas.search import _stdout_to_stderr

    try:
        settings = settings_from_args(args)
        with _stdout_to_stderr():
            result = run_train(settings)
    except (TrainError, ConfigError, RunFolderError, FileNotFoundError) as exc:
        print(f"hrnas train: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(
            f"trained {result.preset or 'network'} on {result.task} for {result.epochs} epoch(s): "
            f"{result.metric_name} {result.metric:.4f}, {result.macs:,} MACs, {result.params:,} params, "
            f"{result.run_seconds:.0f} s; run folder {result.run_dir}"
        )
    return 0
