"""Search checkpoints (one file, replaced atomically) and the searched model's files.

Checkpoints are written with ``torch.save`` to a temporary file and moved over the old one
(``os.replace``), so a kill at any moment leaves either the previous or the new checkpoint, never a
torn one. They hold tensors and plain Python values only and are read with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

CHECKPOINT_NAME = "search_checkpoint.pt"
ARCH_NAME = "arch.json"
WEIGHTS_NAME = "model.safetensors"
RESULT_NAME = "result.json"
CHECKPOINT_FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint is corrupt, or belongs to another search (the message says which and why)."""


def atomic_write_bytes(path: Path, writer) -> None:
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
    data = (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode()
    atomic_write_bytes(path, lambda f: f.write(data))


def save_checkpoint(path: Path, payload: Mapping[str, Any]) -> None:
    atomic_write_bytes(path, lambda f: torch.save(dict(payload, format=CHECKPOINT_FORMAT), f))


def load_checkpoint(path: Path, fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    """Read a checkpoint and check it belongs to the search described by ``fingerprint``."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # torch's message (several lines) suggests weights_only=False: never
        detail = next((line.strip() for line in str(exc).splitlines() if "Unsupported" in line), "")
        raise CheckpointError(f"checkpoint {path} holds Python objects, not only tensors and plain values "
                              f"({detail[:200]}); it was not loaded, as that could run code from the file: move it "
                              "away to start over") from exc
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported the same way
        detail = (str(exc).strip().splitlines() or [""])[0]
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable ({type(exc).__name__}: {detail}); "
                              f"it was left in place: move it away to start over") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path} is not an HR-NAS search checkpoint (format "
                              f"{payload.get('format') if isinstance(payload, dict) else type(payload).__name__})")
    saved = payload.get("fingerprint", {})
    diffs = [f"{k}: checkpoint {saved.get(k)!r} vs now {v!r}" for k, v in fingerprint.items() if saved.get(k) != v]
    if diffs:
        raise CheckpointError(f"checkpoint {path} belongs to another search; differs in " + "; ".join(diffs)
                              + ". Use the original settings, or another output directory")
    return payload


def save_searched(out_dir: Path, arch: Mapping[str, int], model: nn.Module, result: Mapping[str, Any]) -> None:
    """Write ``arch.json``, ``model.safetensors`` and ``result.json`` into ``out_dir``."""
    from safetensors.torch import save

    out_dir = Path(out_dir)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    data = save(state, metadata={"format": "hrnas-searched", "labels": str(len(arch))})
    atomic_write_bytes(out_dir / WEIGHTS_NAME, lambda f: f.write(data))
    atomic_write_json(out_dir / ARCH_NAME, dict(arch))
    atomic_write_json(out_dir / RESULT_NAME, dict(result))


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))
