"""The fixed cost of a kernel path on this machine, in MAC-equivalents (paper Eq. 7 "adapted to latency").

MACs grow linearly with a path's width, but its latency is ``a + b * MACs``: every op of the path
(two 1x1 convs, a depthwise conv, BNs, activations) costs a fixed ``a`` however few channels it
has. At batch 1 on a CPU that fixed cost is worth millions of MACs, so a MAC-only search leaves
many paths of a few channels that cost almost no MACs and most of the latency.
:func:`measure_path_overhead` fits ``a`` and ``b`` on this machine and returns ``a / b`` per image;
``ProgressiveShrinking(path_overhead=...)`` spreads it over each path's remaining units.

Example:
    >>> overhead = measure_path_overhead(batch_size=1)  # doctest: +SKIP
    >>> strategy = ProgressiveShrinking(lambda_=1e-3, path_overhead=overhead)  # doctest: +SKIP
"""

from __future__ import annotations

import statistics
import time

import torch

from nni_hrnas import costs
from nni_hrnas.ops import KernelPath


def _median_seconds(module: torch.nn.Module, x: torch.Tensor, repeats: int) -> float:
    times = []
    with torch.inference_mode():
        for _ in range(3):
            module(x)
        for _ in range(repeats):
            start = time.perf_counter()
            module(x)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_path_overhead(batch_size: int = 1, channels: int = 32, size: int = 16, kernel_size: int = 5,
                          widths: tuple[int, int] = (4, 128), repeats: int = 50) -> float:
    """The MAC-equivalent fixed cost of one kernel path per image at ``batch_size``, measured here.

    Times a :class:`KernelPath` (``channels`` in and out, ``size`` x ``size`` input) at two widths in
    eval mode and fits latency = a + b * MACs; returns ``a / b / batch_size`` (0 if the fit finds no
    fixed cost). The figure depends on the machine, its threads and the batch size you deploy at.
    """
    if batch_size < 1 or repeats < 1 or not 0 < widths[0] < widths[1]:
        raise ValueError(f"need batch_size >= 1, repeats >= 1 and 0 < widths[0] < widths[1]; got "
                         f"batch_size={batch_size}, repeats={repeats}, widths={widths}")
    x = torch.randn(batch_size, channels, size, size)
    unit = costs.kernel_unit_macs(channels, channels, kernel_size, (size, size), 1)
    points = []
    for width in widths:
        torch.manual_seed(0)
        path = KernelPath(channels, channels, width, kernel_size, 1).eval()
        points.append((batch_size * unit * width, _median_seconds(path, x, repeats)))
    (m1, t1), (m2, t2) = points
    seconds_per_mac = (t2 - t1) / (m2 - m1)
    if seconds_per_mac <= 0:
        raise RuntimeError(f"latency did not grow with width ({t1 * 1e6:.1f} us at {widths[0]} channels, "
                           f"{t2 * 1e6:.1f} us at {widths[1]}): the machine is too noisy to measure; "
                           "give path_overhead as a number instead")
    fixed = t1 - seconds_per_mac * m1
    return max(fixed / seconds_per_mac / batch_size, 0.0)
