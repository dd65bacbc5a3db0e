"""The run folder of one search and its result: the one place that defines both.

``hrnas search --out RUN_DIR`` writes, and every other part of the project reads through
:class:`RunFolder`::

    RUN_DIR/result.json            SearchResult.to_dict(): macs, params, metric, arch, search cost, ...
    RUN_DIR/arch.json              the NNI architecture dict (space.freeze(arch) rebuilds it)
    RUN_DIR/model.safetensors      the searched network's trained (EMA) weights
    RUN_DIR/search_checkpoint.pt   the checkpoint --resume continues from (written every epoch)
    RUN_DIR/nni/                   NNI's experiment folder
    RUN_DIR/bench.jsonl            hrnas bench --record: one JSON line per latency measurement
    RUN_DIR/export/                where hrnas export writes by default

``result.json`` carries a ``schema_version``. Folders written before it existed have none and are
read as version 1 (the same keys); a newer version than this code knows is refused with one line
that says to upgrade. Reading needs only the standard library: torch, safetensors and the search
space are imported when weights are written or a model is loaded.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

RESULT_FILE = "result.json"
ARCH_FILE = "arch.json"
WEIGHTS_FILE = "model.safetensors"
CHECKPOINT_FILE = "search_checkpoint.pt"
BENCH_FILE = "bench.jsonl"
NNI_DIR = "nni"
EXPORT_DIR = "export"

#: The version of ``result.json`` this code writes and the newest it reads.
SCHEMA_VERSION = 1
_UPGRADE = "upgrade nni-hrnas (pip install -U nni-hrnas) to read it"
_RESTORE = "restore it from the search's run folder"


class RunFolderError(ValueError):
    """A run folder's file is malformed or of a newer schema; the message names the file and the fix."""


# ---- files written atomically ------------------------------------------------------------------


def atomic_write_bytes(path: Path, writer: Callable[[IO[bytes]], Any]) -> None:
    """Write through ``writer`` to a temporary file moved over ``path``: a kill leaves the old file or the new."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    """``obj`` as indented JSON, written atomically (see :func:`atomic_write_bytes`)."""
    data = (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode()
    atomic_write_bytes(path, lambda f: f.write(data))


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors (no pickle: nothing in the file can run code)."""
    from safetensors.torch import load_file

    return load_file(str(path))


def state_mismatch(model: nn.Module, state: dict[str, torch.Tensor], shown: int = 3) -> str:
    """What keeps ``state`` from loading into ``model`` (missing and unexpected tensors, wrong shapes),
    the first ``shown`` of each named, on one line; empty when it loads."""
    expected = {name: tuple(value.shape) for name, value in model.state_dict().items()}
    problems = {
        "missing": [name for name in expected if name not in state],
        "unexpected": [name for name in state if name not in expected],
        "of another shape": [
            f"{name} {tuple(state[name].shape)} for {expected[name]}"
            for name in expected
            if name in state and tuple(state[name].shape) != expected[name]
        ],
    }
    parts = []
    for kind, names in problems.items():
        if names:
            more = f" and {len(names) - shown} more" if len(names) > shown else ""
            parts.append(f"{len(names)} tensor(s) {kind}: {', '.join(names[:shown])}{more}")
    return "; ".join(parts)


# ---- the result ---------------------------------------------------------------------------------
# Each field's type is checked when a file is read: a checker returns the value in the field's
# Python form, or raises _Bad with what was expected.


class _Bad(Exception):
    pass


def _integer(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise _Bad("an integer")
    return v


def _number(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _Bad("a number")
    return float(v)


def _text(v: Any) -> str:
    if not isinstance(v, str):
        raise _Bad("a string")
    return v


def _flag(v: Any) -> bool:
    if not isinstance(v, bool):
        raise _Bad("true or false")
    return v


def _object(v: Any) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise _Bad("a JSON object")
    return dict(v)


def _arch(v: Any) -> dict[str, int]:
    if not isinstance(v, dict) or not all(isinstance(k, str) and _is_int(n) for k, n in v.items()):
        raise _Bad("a JSON object of choice label -> integer")
    return dict(v)


def _size(v: Any) -> tuple[int, ...]:
    if not isinstance(v, list) or not all(_is_int(n) for n in v):
        raise _Bad("a list of integers")
    return tuple(v)


def _steps(v: Any) -> list[dict[str, Any]]:
    if not isinstance(v, list) or not all(isinstance(s, dict) for s in v):
        raise _Bad("a list of JSON objects")
    return [dict(s) for s in v]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _spec(check: Callable[[Any], Any], doc: str, key: str | None = None, null: bool = False) -> Any:
    """A field of a result: how it is checked, what it means, its key on disk (default: its name),
    and whether ``null`` is written when it is None (the keys every search writes) or it is left out."""
    return field(default=None, metadata={"check": check, "doc": doc, "key": key, "null": null})


@dataclass
class SearchCost:
    """What a search consumed, all ranks together."""

    wall_seconds: float | None = _spec(_number, "wall time of the search loop")
    epochs: int | None = _spec(_integer, "epochs run")
    images_seen: int | None = _spec(_integer, "training images seen")
    mac_epochs: float | None = _spec(
        _number, "sum over epochs of the network's MACs (the shrinking makes it fall)"
    )
    macs_processed: float | None = _spec(_number, "MACs spent on training images")

    @classmethod
    def from_dict(cls, data: Any) -> SearchCost:
        """The search cost of ``result.json``'s ``search_cost`` object, checked field by field."""
        return _from_dict(cls, _object(data), "search_cost.")

    def to_dict(self) -> dict[str, Any]:
        """The ``search_cost`` object of ``result.json``."""
        return _to_dict(self)


def _cost(v: Any) -> SearchCost:
    return SearchCost.from_dict(v)


@dataclass
class SearchResult(Mapping):
    """What one search found and how: ``result.json`` of a run folder, field by field.

    Fields missing from a file (older folders, hand-written ones, other strategies' folders) are
    None; ``hrnas search`` writes them all (``target`` only with a MACs budget). Keys of a file
    that no field names are kept in ``extra`` and written back.

    Reading it as a mapping (``result["macs"]``) gives the on-disk keys, for scripts written
    against ``result.json``; the project itself reads the attributes.
    """

    schema_version: int = SCHEMA_VERSION
    # the searched network
    macs: int | None = _spec(_integer, "MACs of the searched network at input_size")
    params: int | None = _spec(_integer, "its parameters")
    metric: float | None = _spec(_number, "its validation metric after the search (EMA weights)", null=True)
    metric_name: str | None = _spec(_text, "what metric is: mIoU, top1, AP, ...")
    arch: dict[str, int] | None = _spec(_arch, "the searched architecture: choice label -> width")
    arch_max: dict[str, int] | None = _spec(_arch, "the supernet's architecture (every width at its maximum)")
    macs_max: int | None = _spec(_integer, "MACs of the supernet (before the search)")
    macs_min: int | None = _spec(
        _integer, "MACs with every searched unit removed (what no budget goes below)"
    )
    # the search
    search_seconds: float | None = _spec(_number, "wall time of the search loop")
    lambda_: float | None = _spec(_number, "penalty weight of Eq. 7", key="lambda")
    eps: float | None = _spec(_number, "units with |gamma| < eps were removed")
    prune_every: int | None = _spec(_integer, "epochs between prune steps")
    warmup_epochs: float | None = _spec(_number, "epochs over which lambda ramped up")
    epochs: int | None = _spec(_integer, "search epochs")
    seed: int | None = _spec(_integer, "the seed of weights, data order and every draw")
    input_size: tuple[int, ...] | None = _spec(_size, "(C, H, W) the costs are computed at")
    strategy: str | None = _spec(_text, "hrnas, or the NNI strategy that found arch")
    path_overhead: float | None = _spec(_number, "MAC-equivalents charged per kernel path")
    unit_cost: str | None = _spec(
        _text, "what a depthwise channel's penalty weight counted: exact (MACs saved) or paper (Eq. 6)"
    )
    elementwise_weight: float | None = _spec(
        _number, "MAC-equivalents charged per BN or activation element of a unit"
    )
    min_path_width: int | None = _spec(
        _integer, "the fewest channels (tokens) a kernel path (transformer) kept, if any"
    )
    shrink_epochs: int | None = _spec(
        _integer, "epochs of shrinking; the rest trained the final architecture"
    )
    final_lr_scale: float | None = _spec(
        _number, "the learning rates that trained the final architecture, times the task's"
    )
    search_cost: SearchCost | None = _spec(_cost, "what the search consumed")
    trajectory: list[dict[str, Any]] | None = _spec(
        _steps, "one entry per prune step: epoch, macs, params, metric"
    )
    target_macs: int | None = _spec(_integer, "the MACs budget, if any", null=True)
    target: dict[str, Any] | None = _spec(
        _object, "with a budget: where the result landed (side, relative_error)"
    )
    resumed_at_epoch: int | None = _spec(_integer, "the epoch a resumed search continued from", null=True)
    devices: dict[str, Any] | None = _spec(_object, "accelerator, devices, num_nodes, world_size, precision")
    # what ran it (hrnas search)
    task: str | None = _spec(_text, "the task name (digits_seg, cityscapes, ...)")
    preset: str | None = _spec(_text, "the space preset")
    config: dict[str, Any] | None = _spec(_object, "the space's whole HRNASConfig (what load_model rebuilds)")
    run_seconds: float | None = _spec(_number, "wall time of the whole run (NNI experiment included)")
    smoke: bool | None = _spec(_flag, "searched at smoke size (HRNAS_SMOKE)")
    run_dir: str | None = _spec(_text, "the run folder it was written to")
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any, source: str = RESULT_FILE) -> SearchResult:
        """A result from ``result.json``'s content; raises :class:`RunFolderError` naming ``source``."""
        if not isinstance(data, dict):
            raise RunFolderError(
                f"{source} is not a result.json as hrnas search writes it (a JSON "
                f"{type(data).__name__}, not an object); {_RESTORE}"
            )
        version = data.get("schema_version", 1)  # folders written before the field existed: version 1
        if not _is_int(version) or version < 1:
            raise RunFolderError(
                f"{source} is not a result.json as hrnas search writes it (schema_version "
                f"{version!r}); {_RESTORE}"
            )
        if version > SCHEMA_VERSION:
            raise RunFolderError(
                f"{source} has schema_version {version}, newer than this nni-hrnas reads "
                f"(up to {SCHEMA_VERSION}): {_UPGRADE}"
            )
        try:
            return _from_dict(cls, data)
        except RunFolderError as exc:
            raise RunFolderError(
                f"{source} is not a result.json as hrnas search writes it ({exc}); {_RESTORE}"
            ) from None

    def to_dict(self) -> dict[str, Any]:
        """The ``result.json`` content: the on-disk keys, None fields left out unless always written."""
        return _to_dict(self)

    # the read-only mapping of the on-disk keys
    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


def _fields(cls: type) -> list[tuple[dataclasses.Field, str]]:
    return [(f, f.metadata.get("key") or f.name) for f in dataclasses.fields(cls) if "check" in f.metadata]


def _from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    values: dict[str, Any] = {}
    known = {"schema_version", "extra"}
    for f, key in _fields(cls):
        known.add(key)
        if data.get(key) is None:
            continue
        try:
            values[f.name] = f.metadata["check"](data[key])
        except _Bad as bad:
            raise RunFolderError(f"{prefix}{key} is {_short(data[key])}, expected {bad}") from None
    if "schema_version" in {f.name for f in dataclasses.fields(cls)}:
        values["schema_version"] = data.get("schema_version", 1)
        values["extra"] = {k: v for k, v in data.items() if k not in known}
    return cls(**values)


def _to_dict(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if hasattr(obj, "schema_version"):
        out["schema_version"] = obj.schema_version
    for f, key in _fields(type(obj)):
        value = getattr(obj, f.name)
        if value is None and not f.metadata["null"]:
            continue
        if isinstance(value, SearchCost):
            value = value.to_dict()
        elif isinstance(value, tuple):
            value = list(value)
        out[key] = value
    out.update(getattr(obj, "extra", {}))
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---- the folder ---------------------------------------------------------------------------------


class RunFolder:
    """The files of one search's run folder (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.result_path = self.path / RESULT_FILE
        self.arch_path = self.path / ARCH_FILE
        self.weights_path = self.path / WEIGHTS_FILE
        self.checkpoint_path = self.path / CHECKPOINT_FILE
        self.bench_path = self.path / BENCH_FILE
        self.nni_dir = self.path / NNI_DIR
        self.export_dir = self.path / EXPORT_DIR  # where hrnas export writes without --out
        #: what a finished search leaves and an export copies
        self.searched_files = (self.arch_path, self.weights_path, self.result_path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def has_result(self) -> bool:
        """Whether the search finished here (its ``result.json`` is written)."""
        return self.result_path.is_file()

    def has_checkpoint(self) -> bool:
        """Whether a search checkpoint is here (``--resume`` continues it; a new search is refused)."""
        return self.checkpoint_path.exists()

    def save(self, arch: Mapping[str, int], model: nn.Module, result: SearchResult) -> None:
        """Write arch, weights and result, each atomically; the weights first, the result last."""
        from safetensors.torch import save

        state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
        data = save(state, metadata={"format": "hrnas-searched", "labels": str(len(arch))})
        atomic_write_bytes(self.weights_path, lambda f: f.write(data))
        atomic_write_json(self.arch_path, dict(arch))
        atomic_write_json(self.result_path, result.to_dict())

    def load_result(self) -> SearchResult:
        """The folder's result; FileNotFoundError if it has none, :class:`RunFolderError` if it is malformed."""
        self._require(self.result_path)
        try:
            data = json.loads(self.result_path.read_text())
        except ValueError as exc:
            raise RunFolderError(
                f"{self.result_path} is not a result.json as hrnas search writes it "
                f"({type(exc).__name__}: {exc}); {_RESTORE}"
            ) from None
        return SearchResult.from_dict(data, source=str(self.result_path))

    def load_arch(self) -> dict[str, int]:
        """The searched architecture of ``arch.json`` (choice label -> width)."""
        self._require(self.arch_path)
        try:
            return _arch(json.loads(self.arch_path.read_text()))
        except (ValueError, _Bad) as exc:
            detail = f"expected {exc}" if isinstance(exc, _Bad) else f"{type(exc).__name__}: {exc}"
            raise RunFolderError(
                f"{self.arch_path} is not an arch.json as hrnas search writes it ({detail}); {_RESTORE}"
            ) from None

    def load_model(self, fuse: bool = False) -> nn.Module:
        """The searched network with its trained weights, in eval mode.

        ``fuse=True`` returns its inference form (:func:`search_spaces.ops.fuse.fuse_for_inference`: BNs
        folded, each block's kernel paths merged): the same outputs to float tolerance, fewer ops.
        """
        from search_spaces import HRNASNetwork, load_arch
        from search_spaces.config import HRNASConfig
        from search_spaces.presets import PLUGIN_PRESETS

        for path in self.searched_files:
            self._require(path)
        result = self.load_result()
        plugin = result.extra.get("model")  # hrnas train --model: a fixed Table 8 network
        try:
            if result.config is None:
                raise KeyError("config")
            if plugin is not None:
                model = type(PLUGIN_PRESETS[plugin])(**result.config).build()
            else:
                config = HRNASConfig(**result.config)
        except (TypeError, KeyError) as exc:
            raise RunFolderError(
                f"{self.result_path} is not a result.json as hrnas search writes it "
                f"({type(exc).__name__}: {exc}); {_RESTORE}"
            ) from None
        if plugin is None:
            model = HRNASNetwork(config, load_arch(self.arch_path, config))
        try:
            state = load_weights(self.weights_path)
        except Exception as exc:  # noqa: BLE001 - safetensors' errors (a truncated or foreign file)
            detail = (str(exc).strip().splitlines() or [""])[0][:200]
            raise RunFolderError(
                f"{self.weights_path} does not hold this run's weights ({type(exc).__name__}: "
                f"{detail}); {_RESTORE}"
            ) from None
        mismatch = state_mismatch(model, state)
        if mismatch:  # torch's own message spans many lines; this names the first few tensors on one
            raise RunFolderError(
                f"{self.weights_path} does not hold this run's weights ({mismatch}); {_RESTORE}"
            )
        model.load_state_dict(state, strict=True)
        if fuse:
            from search_spaces.ops.fuse import fuse_for_inference

            return fuse_for_inference(model)
        return model.eval()

    def copy_to(self, out: str | os.PathLike[str], result: SearchResult | None = None) -> RunFolder:
        """Copy arch and weights to ``out`` and write the result there (this folder's unless given)."""
        target = RunFolder(out)
        result = result if result is not None else self.load_result()
        target.path.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.arch_path, target.arch_path)
        shutil.copyfile(self.weights_path, target.weights_path)
        atomic_write_json(target.result_path, result.to_dict())
        return target

    def _require(self, path: Path) -> None:
        if not path.exists():
            hint = (
                (f" (the search did not finish: continue it with hrnas search --resume --out {self.path})")
                if self.has_checkpoint()
                else ""
            )
            raise FileNotFoundError(f"{path} is missing{hint}")
