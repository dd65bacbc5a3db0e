"""The run state of a search: counters, search cost and trajectory, and what a checkpoint holds.

A checkpoint (``search_checkpoint.pt``, written by rank zero after every epoch, see
:mod:`.checkpoint` for the atomic file) holds the network, the EMA, the optimizer and scheduler
states, the :class:`RunState` and the RNG state. It belongs to one search, described by a
*fingerprint* (every setting that changes what the search computes, the world size included: the
global batch, the data shards and the steps per epoch depend on it).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nni_hrnas.run_folder import SearchCost

from .checkpoint import CheckpointError, load_checkpoint


@dataclass
class RunState:
    """Where a search is: ``epoch`` is the next epoch to run. Costs count the images of every rank."""

    epoch: int = 0
    global_step: int = 0
    prune_step: int = 0
    lambda_scale: float = 1.0
    normaliser: float = 1.0
    start_macs: int = 0
    wall_seconds: float = 0.0
    images_seen: int = 0
    mac_epochs: float = 0.0
    macs_processed: float = 0.0
    metric: float = float("nan")
    trajectory: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The counters as a plain dict (what the checkpoint stores)."""
        return dict(self.__dict__)

    def search_cost(self) -> SearchCost:
        """What the search consumed so far, as the result records it."""
        return SearchCost(
            wall_seconds=self.wall_seconds,
            epochs=self.epoch,
            images_seen=self.images_seen,
            mac_epochs=self.mac_epochs,
            macs_processed=self.macs_processed,
        )


def rng_state() -> dict[str, Any]:
    """The host RNGs (torch, numpy, random): what the next random draw of this process depends on."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "random": list(random.getstate()[1]),
        "random_version": random.getstate()[0],
        "random_gauss": random.getstate()[2],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the host RNGs from what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate((state["random_version"], tuple(state["random"]), state["random_gauss"]))


def read_resumable(
    path: Path, fingerprint: dict[str, Any], defaults: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Load ``path`` and check it belongs to this search; a world-size mismatch names the flags to fix.

    ``defaults``: the value a key absent from an older checkpoint's fingerprint stands for.
    """
    world = fingerprint.get("world_size", 1)
    payload = load_checkpoint(path, {k: v for k, v in fingerprint.items() if k != "world_size"}, defaults)
    was = payload.get("fingerprint", {}).get("world_size", 1)
    if was != world:
        raise CheckpointError(
            f"checkpoint {path} was written by a search on {was} process(es) (devices x num_nodes), this one runs "
            f"on {world}: the global batch, data shards and steps per epoch would change; resume with --devices "
            f"and --num-nodes giving {was} process(es), or start over with another --out (nothing was overwritten)"
        )
    return payload
