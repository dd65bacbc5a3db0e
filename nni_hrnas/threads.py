"""CPU threads per process when several training processes share one machine.

Torch starts each process with one intra-op thread per core, so W processes on one machine run
W x cores threads, and the cores thrash (two default-threaded searches on two cores ran more
than ten times slower than one). :func:`threads_per_worker` splits the cores instead and
:func:`limit_threads` applies the split to torch and to the processes this one starts.
"""

from __future__ import annotations

import os

#: The variables OpenMP, MKL and OpenBLAS read when a process (e.g. a data-loader worker) starts.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS reports it)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def threads_per_worker(workers: int, threads: int | None = None) -> int:
    """Threads for each of ``workers`` processes sharing this machine.

    ``threads`` (a user's flag) wins; otherwise the cores split evenly (at least one each), capped
    by ``OMP_NUM_THREADS`` when the environment sets it (a machine-wide limit the user chose).

    Example:
        >>> threads_per_worker(2, threads=3)
        3
    """
    if threads is not None:
        if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ValueError(f"invalid threads per worker {threads!r}: expected an integer >= 1")
        return threads
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"invalid workers={workers!r}: expected an integer >= 1")
    share = max(1, available_cores() // workers)
    cap = os.environ.get("OMP_NUM_THREADS", "")
    return min(share, int(cap)) if cap.isdigit() and int(cap) >= 1 else share


def limit_threads(threads: int) -> None:
    """Run torch in this process, and the processes it starts, on ``threads`` threads."""
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    import torch

    torch.set_num_threads(threads)


def enter_forked_rank(world_size: int) -> None:
    """Call first in each training process that Fabric forked on this machine's CPU.

    The ranks share the cores; and a process forked from one whose OpenMP pool had run with
    several threads can wait forever on that pool's threads, which the fork did not copy, unless
    it runs on no more threads than its share (one, when two ranks share two cores).
    """
    limit_threads(threads_per_worker(world_size))
