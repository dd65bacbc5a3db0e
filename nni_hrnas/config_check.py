"""``hrnas check CONFIG [--port P]``: what ``nnictl create`` would trip on, said before it starts.

``nnictl create`` reports an unknown key or a wrong type as a Python traceback, a port in use as
"Port 8080 is not idle", and a tuner that rejects its ``classArgs`` or the search space only in
the experiment's ``dispatcher.log`` once the web UI is up. This check runs the same validations
(NNI's own ``ExperimentConfig``, our tuner's constructor and ``update_search_space``, the trial
command's task, data root and device flags against ``trialGpuNumber`` and ``gpuIndices``, the
port) and names each problem with its fix. A GPU request this machine cannot meet is a warning.

Example:
    $ hrnas check experiments/cityscapes.yml --port 8080 && nnictl create --config experiments/cityscapes.yml --port 8080
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import shlex
import socket
import sys
from pathlib import Path
from typing import Any, NoReturn

import yaml

from nni_hrnas.search import device_kwargs
from nni_hrnas.strategy.loop import DeviceSettings
from nni_hrnas.tasks.registry import get_task
from nni_hrnas.trial import build_parser

OUR_TUNER = "nni_hrnas.tuning.OptunaTuner"


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _config_problems(data: dict[str, Any]) -> list[str]:
    """Unknown keys and wrong types, as NNI 3.0's ``ExperimentConfig`` finds them, with the fix."""
    from nni.experiment.config import ExperimentConfig

    known = [_camel(f.name) for f in dataclasses.fields(ExperimentConfig)]
    canonical = {name.lower() for name in known}  # NNI accepts camelCase and snake_case alike
    unknown = [key for key in data if str(key).replace("_", "").lower() not in canonical]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, known, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        return [
            f"unknown key(s) {', '.join(hints)}: NNI 3.0 experiment configs accept {', '.join(sorted(known))}"
        ]
    try:
        ExperimentConfig(**data).validate()
    except (AttributeError, ValueError, TypeError) as exc:
        return [f"{exc} (see https://nni.readthedocs.io/en/v3.0/reference/experiment_config.html)"]
    return []


def _tuner_problems(data: dict[str, Any]) -> list[str]:
    """Our tuner's classArgs and the search space of lambda and eps."""
    tuner = data.get("tuner") or {}
    if tuner.get("className") != OUR_TUNER:
        return []
    import optuna

    from nni_hrnas.tuning import OptunaTuner, open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the throw-away in-memory study is no news

    args = dict(tuner.get("classArgs") or {})
    storage = args.pop("storage", None)
    problems = []
    try:
        instance = OptunaTuner(**args)
    except (TypeError, ValueError) as exc:
        return [f"tuner.classArgs: {exc}"]
    if storage is not None:
        try:
            open_storage(storage)
        except (ValueError, RuntimeError, OSError) as exc:
            problems.append(f"tuner.classArgs.storage: {exc}")
    space = data.get("searchSpace") or {}
    missing = {"lambda", "eps"} - set(space)
    if missing:
        problems.append(
            f"searchSpace has no {sorted(missing)}: every HR-NAS trial needs lambda and eps, e.g. "
            "lambda: {_type: loguniform, _value: [1.0e-5, 1.0e-3]}"
        )
    try:
        instance.update_search_space(space)
    except (TypeError, ValueError) as exc:
        problems.append(f"searchSpace: {exc}")
    return problems


class _FlagError(Exception):
    """The trial parser's complaint about the trial command's flags."""


def _trial_args(data: dict[str, Any]) -> argparse.Namespace | str | None:
    """The trial command's flags as the trial itself parses them (:func:`nni_hrnas.trial.build_parser`:
    the same setting declarations as ``hrnas search``), so that no setting is checked by a second parser.

    None when the command runs no HR-NAS trial; the parser's complaint (a string) when it rejects them.
    """
    command = str(data.get("trialCommand") or "")
    if "nni_hrnas.trial" not in command:
        return None
    words = shlex.split(command)
    start = next(i for i, w in enumerate(words) if "nni_hrnas.trial" in w) + 1
    parser = build_parser()

    def complain(message: str) -> NoReturn:
        raise _FlagError(message)

    parser.error = complain  # type: ignore[method-assign]  # argparse would print and exit
    try:
        return parser.parse_args(words[start:])
    except _FlagError as exc:
        return (
            f"trialCommand: {exc} (python -m nni_hrnas.trial takes the flags of hrnas search but --out "
            "and --resume, and --threads)"
        )


def _trial_problems(data: dict[str, Any]) -> list[str]:
    """The trial command's flags, task, and data root (flag or environment variable)."""
    args = _trial_args(data)
    if args is None:
        return []
    if isinstance(args, str):
        return [args]
    try:
        spec = get_task(args.task)
    except ValueError as exc:
        return [f"trialCommand: {exc}"]
    root = args.data_root or (os.environ.get(spec.root_env) if spec.root_env else None)
    if spec.root_env and not root:
        return [
            f"task {spec.name!r} reads its data from ${spec.root_env}, which is not set: export "
            f"{spec.root_env}=/path/to/data (or add --data-root PATH to trialCommand) before nnictl create"
        ]
    if root and not Path(root).is_dir():
        return [
            f"task {spec.name!r}: data root {root!r} is not a folder; point {spec.root_env} or --data-root "
            "at the data set's top folder"
        ]
    return []


def _gpu_problems(data: dict[str, Any]) -> list[str]:
    """``trialGpuNumber``, ``gpuIndices`` and ``trialConcurrency`` against the trial's device flags.

    NNI's local training service gives each trial ``trialGpuNumber`` GPUs out of ``gpuIndices``
    (through ``CUDA_VISIBLE_DEVICES``) and runs up to ``trialConcurrency`` trials at once; a trial
    that needs more GPUs than it is given, or GPUs it is not given, fails or waits.
    """
    args = _trial_args(data)
    gpus = int(data.get("trialGpuNumber") or 0)
    service = data.get("trainingService") or {}
    service = service if isinstance(service, dict) else {}
    indices = service.get("gpuIndices")
    if isinstance(indices, str):
        indices = [i for i in indices.split(",") if i.strip()]
    elif isinstance(indices, int):
        indices = [indices]
    problems = []
    if indices is not None and gpus > len(indices):
        problems.append(
            f"trainingService.gpuIndices lists {len(indices)} GPU(s), fewer than trialGpuNumber: {gpus}: "
            f"no trial could ever start; list at least {gpus} GPU(s) or lower trialGpuNumber"
        )
    if not isinstance(args, argparse.Namespace):  # no HR-NAS trial, or flags _trial_problems reports
        return problems
    try:
        device = DeviceSettings(**device_kwargs(args))
    except ValueError as exc:
        return problems + [f"trialCommand: {exc}"]
    if device.accelerator == "cpu" and gpus:
        problems.append(
            f"trialGpuNumber: {gpus} reserves GPUs, but trialCommand trains with --accelerator cpu: "
            "set trialGpuNumber: 0, or --accelerator cuda"
        )
    elif device.accelerator in ("cuda", "gpu") and not gpus:
        problems.append(
            f"trialCommand trains with --accelerator {device.accelerator}, but trialGpuNumber is "
            f"{gpus}: NNI gives the trial no GPU; set trialGpuNumber: {device.devices}"
        )
    elif device.accelerator != "cpu" and gpus and device.devices > gpus:
        problems.append(
            f"trialCommand asks for --devices {device.devices}, but trialGpuNumber: {gpus} gives each "
            f"trial {gpus} GPU(s): set trialGpuNumber: {device.devices}"
        )
    if device.num_nodes > 1:
        problems.append(
            f"trialCommand: --num-nodes {device.num_nodes}: an nnictl trial runs on one machine; use "
            "--num-nodes 1 and --devices for the GPUs of that machine"
        )
    return problems


def gpu_warnings(data: dict[str, Any]) -> list[str]:
    """What this machine lacks for the config's GPU requests (not a problem of the config itself)."""
    import torch

    gpus = int(data.get("trialGpuNumber") or 0)
    if not gpus:
        return []
    have = torch.cuda.device_count()
    if have < gpus:
        return [
            f"trialGpuNumber: {gpus}, but this machine has {have} CUDA GPU(s): NNI would keep every trial "
            "waiting for a GPU; run nnictl create on the GPU machine"
        ]
    return []


#: What ``hrnas check`` says of the address NNI's web server binds (compat patch 5).
EXPOSURE_WARNING = (
    "plain `nnictl create` binds NNI's web server on every interface (NNI 3.0 has no option for "
    "the address; its REST API can stop experiments): start it with `hrnas nnictl create ...`, "
    "which binds 127.0.0.1 (add --host 0.0.0.0 to expose it on purpose)"
)


def port_problem(port: int) -> str | None:
    """Why NNI could not serve on ``port`` (it binds every interface), or None."""
    with socket.socket() as s:
        try:
            s.bind(("", port))
        except OSError:
            return (
                f"port {port} is in use: pick another (--port), or stop the experiment holding it "
                f"(nnictl stop --port {port})"
            )
    return None


def check_config(path: str | Path, port: int | None = None) -> list[str]:
    """Every problem ``nnictl create --config path [--port port]`` would hit; empty when none."""
    path = Path(path)
    if not path.is_file():
        return [f"{path}: no such file"]
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        return [f"{path} is not valid YAML: {' '.join(str(exc).split())}"]  # PyYAML's message spans lines
    if not isinstance(data, dict):
        return [f"{path}: expected a mapping of NNI config keys, got {type(data).__name__}"]
    problems = _config_problems(data)
    if not problems:
        problems += _tuner_problems(data) + _trial_problems(data) + _gpu_problems(data)
    if port is not None and (problem := port_problem(port)):
        problems.append(problem)
    return problems


def add_check_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags of ``hrnas check``."""
    parser.add_argument(
        "config", metavar="CONFIG", help="an nnictl experiment config, e.g. experiments/digits.yml"
    )
    parser.add_argument("--port", type=int, help="the port you will pass to nnictl create")
    return parser


def cmd_check(args: argparse.Namespace) -> int:
    """``hrnas check``: 0 when nnictl create should start cleanly, 2 with the problems on stderr."""
    problems = check_config(args.config, args.port)
    for problem in problems:
        print(f"hrnas check: error: {problem}", file=sys.stderr)
    if not problems:
        for warning in [*gpu_warnings(yaml.safe_load(Path(args.config).read_text())), EXPOSURE_WARNING]:
            print(f"hrnas check: warning: {warning}", file=sys.stderr)
    if not problems:
        print(f"{args.config}: ok")
    return 2 if problems else 0
