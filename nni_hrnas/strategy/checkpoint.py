"""Search checkpoints (one file, replaced atomically); the run folder's files are :mod:`nni_hrnas.run_folder`'s.

Checkpoints are written with ``torch.save`` to a temporary file and moved over the old one
(``os.replace``), so a kill at any moment leaves either the previous or the new checkpoint, never a
torn one. They hold tensors and plain Python values only and are read with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nni_hrnas.run_folder import CHECKPOINT_FILE, RunFolder, SearchResult, atomic_write_bytes, load_weights

#: The checkpoint's name inside ``checkpoint_dir`` (the run folder defines it).
CHECKPOINT_NAME = CHECKPOINT_FILE
CHECKPOINT_FORMAT = 1

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_NAME",
    "CheckpointError",
    "load_checkpoint",
    "load_weights",
    "save_checkpoint",
    "save_searched",
]


class CheckpointError(RuntimeError):
    """A checkpoint is corrupt, or belongs to another search (the message says which and why)."""


def save_checkpoint(path: Path, payload: Mapping[str, Any]) -> None:
    """Write ``payload`` (tensors and plain values) to ``path`` atomically, tagged with the checkpoint format."""
    atomic_write_bytes(path, lambda f: torch.save(dict(payload, format=CHECKPOINT_FORMAT), f))


def load_checkpoint(
    path: Path, fingerprint: Mapping[str, Any], defaults: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Read a checkpoint and check it belongs to the search described by ``fingerprint``.

    A key the checkpoint's fingerprint lacks stands for its value in ``defaults``: a checkpoint
    written before a setting was compared ran with that setting's default.
    """
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (
        pickle.UnpicklingError
    ) as exc:  # torch's message (several lines) suggests weights_only=False: never
        detail = next((line.strip() for line in str(exc).splitlines() if "Unsupported" in line), "")
        raise CheckpointError(
            f"checkpoint {path} holds Python objects, not only tensors and plain values "
            f"({detail[:200]}); it was not loaded, as that could run code from the file: move it "
            "away to start over"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported the same way
        detail = (str(exc).strip().splitlines() or [""])[0]
        raise CheckpointError(
            f"checkpoint {path} is corrupt or unreadable ({type(exc).__name__}: {detail}); "
            f"it was left in place: move it away to start over"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"checkpoint {path} is not an HR-NAS search checkpoint (format "
            f"{payload.get('format') if isinstance(payload, dict) else type(payload).__name__})"
        )
    saved = {**(defaults or {}), **payload.get("fingerprint", {})}
    diffs = [
        f"{k}: checkpoint {saved.get(k)!r} vs now {v!r}" for k, v in fingerprint.items() if saved.get(k) != v
    ]
    if diffs:
        raise CheckpointError(
            f"checkpoint {path} belongs to another search; differs in "
            + "; ".join(diffs)
            + ". Use the original settings, or another output directory"
        )
    return payload


def save_searched(
    out_dir: Path, arch: Mapping[str, int], model: nn.Module, result: Mapping[str, Any]
) -> None:
    """Write a run folder's arch, weights and result (a ``result.json``-shaped mapping) into ``out_dir``."""
    RunFolder(out_dir).save(arch, model, SearchResult.from_dict(dict(result)))
