"""Latency measured the way deployment engineers do, and the fixed cost of a kernel path (Eq. 7 adapted).

:func:`time_latency` is the one timing loop of the project: warm-up runs, then many timed runs,
reported as median and percentiles (one slow run from a busy machine moves the mean, not the
median). It times any callable, so a PyTorch module, a ``torch.export`` program and an
onnxruntime session (:func:`onnxruntime_runner`) are measured alike; :func:`inference_runner` and
:func:`training_step_runner` make the calls for a network's inference and its training step.

MACs grow linearly with a path's width, but its latency is ``a + b * MACs``: every op of the path
(two 1x1 convs, a depthwise conv, BNs, activations) costs a fixed ``a`` however few channels it
has. At batch 1 on a CPU that fixed cost is worth millions of MACs, so a MAC-only search leaves
many paths of a few channels that cost almost no MACs and most of the latency.
:func:`measure_path_overhead` fits ``a`` and ``b`` on this machine, in PyTorch or in the runtime
the network will be deployed on (``runtime="onnxruntime"``), and returns ``a / b`` per image;
``ProgressiveShrinking(path_overhead=...)`` spreads it over each path's remaining units.

Example:
    >>> overhead = measure_path_overhead(batch_size=1, runtime="onnxruntime")  # doctest: +SKIP
    >>> strategy = ProgressiveShrinking(lambda_=1e-3, path_overhead=overhead)  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from search_spaces import costs
from search_spaces.ops import KernelPath, SearchingBlock
from search_spaces.ops.fuse import DEPLOY_CHANNEL_MULTIPLE, fuse_for_inference

#: Where a network can be timed: PyTorch in this process, or onnxruntime's CPU provider.
RUNTIMES = ("torch", "onnxruntime")


@dataclass(frozen=True)
class LatencyStats:
    """Seconds per call: median, 10th and 90th percentiles, mean and minimum over ``repeats`` runs."""

    median: float
    p10: float
    p90: float
    mean: float
    min: float
    repeats: int
    warmup: int

    def as_ms(self) -> dict[str, Any]:
        """The figures in milliseconds (``median_ms`` ...), with ``repeats`` and ``warmup``."""
        out = {f"{k}_ms": round(v * 1e3, 4) for k, v in asdict(self).items() if isinstance(v, float)}
        out.update(repeats=self.repeats, warmup=self.warmup)
        return out


def time_latency(run: Callable[[], Any], warmup: int = 10, repeats: int = 100) -> LatencyStats:
    """Time ``run()``: ``warmup`` untimed calls, then ``repeats`` timed ones (``time.perf_counter``)."""
    if warmup < 0 or repeats < 1:
        raise ValueError(f"need warmup >= 0 and repeats >= 1; got warmup={warmup}, repeats={repeats}")
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    if repeats == 1:
        p10 = p90 = times[0]
    else:  # inclusive: percentiles between the observed extremes, as numpy's default
        cuts = statistics.quantiles(times, n=10, method="inclusive")
        p10, p90 = cuts[0], cuts[-1]
    return LatencyStats(
        median=statistics.median(times),
        p10=p10,
        p90=p90,
        mean=statistics.fmean(times),
        min=min(times),
        repeats=repeats,
        warmup=warmup,
    )


def onnxruntime_runner(model: str | bytes, x: torch.Tensor, threads: int = 1) -> Callable[[], Any]:
    """A call that runs ONNX ``model`` (a path or the serialized bytes) on ``x`` with onnxruntime's CPU provider.

    ``threads`` sets the intra-op threads; inter-op parallelism is off (one sequential graph), as
    for a latency measurement at a fixed thread budget.
    """
    import onnxruntime as ort  # local: an optional dependency (the onnx extra), needed only on this path

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x.detach().cpu().numpy()}
    return lambda: session.run(None, feed)


def onnx_bytes(module: torch.nn.Module, x: torch.Tensor, opset: int = 18) -> bytes:
    """``module`` (in eval mode) exported by torch's ONNX exporter at input ``x``, serialized."""
    program = torch.onnx.export(
        copy.deepcopy(module).eval(), (x,), dynamo=True, opset_version=opset, optimize=False, verbose=False
    )
    return program.model_proto.SerializeToString()


def inference_runner(module: torch.nn.Module, x: torch.Tensor, runtime: str = "torch") -> Callable[[], Any]:
    """A call that runs ``module`` on ``x`` for inference: in PyTorch (``torch.inference_mode``) or,
    with ``runtime="onnxruntime"``, exported to ONNX and run by onnxruntime with torch's thread count.

    Example:
        >>> stats = time_latency(inference_runner(net.eval(), x), repeats=50)  # doctest: +SKIP
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"invalid runtime={runtime!r}: expected one of {', '.join(RUNTIMES)}")
    if runtime == "onnxruntime":
        return onnxruntime_runner(onnx_bytes(module, x), x, threads=torch.get_num_threads())

    def run() -> None:
        with torch.inference_mode():
            module(x)

    return run


def training_step_runner(
    module: torch.nn.Module,
    x: torch.Tensor,
    loss: Callable[[torch.Tensor], torch.Tensor] | None = None,
    lr: float = 1e-3,
) -> Callable[[], None]:
    """A call that makes one training step of ``module`` on ``x``: forward, ``loss(output)`` (the
    output's mean square by default: the cost of the loss itself is the same for every network),
    backward, and an AdamW update of its own optimizer. ``module`` is trained in place.

    Example:
        >>> stats = time_latency(training_step_runner(net.train(), x), warmup=3, repeats=20)  # doctest: +SKIP
    """
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr)
    loss_of = loss if loss is not None else (lambda out: out.float().square().mean())

    def run() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_of(module(x)).backward()
        optimizer.step()

    return run


def measure_path_overhead(
    batch_size: int = 1,
    channels: int = 32,
    size: int = 16,
    kernel_size: int = 5,
    widths: tuple[int, int] = (8, 128),
    repeats: int = 50,
    runtime: str = "torch",
) -> float:
    """The MAC-equivalent fixed cost of one kernel path per image at ``batch_size``, measured here.

    Times a :class:`KernelPath` (``channels`` in and out, ``size`` x ``size`` input) at two widths in
    eval mode, in PyTorch or in onnxruntime (``runtime``, see :data:`RUNTIMES`; onnxruntime runs
    with torch's current thread count), and fits latency = a + b * MACs; returns
    ``a / b / batch_size`` (0 if the fit finds no fixed cost). The figure depends on the machine,
    its threads, the runtime and the batch size you deploy at.

    In onnxruntime the path is timed in the form ``hrnas export --fuse`` writes (in a block beside a
    3x3 path of 16 channels: folded, merged, widths padded), and the block without it is subtracted:
    a lone unfused path there measured 0.11-0.22 M MAC-equivalents (one thread), this 0.53-0.55 M
    (0.76-1.1 M at two threads); searches with the lower figure left networks whose onnxruntime
    latency fell only 0.64x as much as their MACs.
    """
    if batch_size < 1 or repeats < 1 or not 0 < widths[0] < widths[1]:
        raise ValueError(
            f"need batch_size >= 1, repeats >= 1 and 0 < widths[0] < widths[1]; got "
            f"batch_size={batch_size}, repeats={repeats}, widths={widths}"
        )
    x = torch.randn(batch_size, channels, size, size)
    unit = costs.kernel_unit_macs(channels, channels, kernel_size, (size, size), 1)
    deployed = runtime == "onnxruntime"
    points = []
    for width in widths:
        torch.manual_seed(0)
        module = (
            _deployed_block(channels, kernel_size, width, 16)
            if deployed
            else KernelPath(channels, channels, width, kernel_size, 1).eval()
        )
        seconds = time_latency(inference_runner(module, x, runtime), warmup=3, repeats=repeats).median
        points.append((batch_size * unit * width, seconds))
    (m1, t1), (m2, t2) = points
    seconds_per_mac = (t2 - t1) / (m2 - m1)
    if seconds_per_mac <= 0:
        raise RuntimeError(
            f"latency did not grow with width ({t1 * 1e6:.1f} us at {widths[0]} channels, "
            f"{t2 * 1e6:.1f} us at {widths[1]}): the machine is too noisy to measure; "
            "give path_overhead as a number instead"
        )
    fixed = t1 - seconds_per_mac * m1
    if deployed:  # the fixed cost the path adds to a block that keeps another path
        base = _deployed_block(channels, kernel_size, 0, 16)
        fixed -= time_latency(inference_runner(base, x, runtime), warmup=3, repeats=repeats).median
    return max(fixed / seconds_per_mac / batch_size, 0.0)


def _deployed_block(channels: int, kernel_size: int, width: int, other_width: int) -> torch.nn.Module:
    """The form ``hrnas export --fuse`` deploys: a block with a 3x3 (or 5x5) path of ``other_width`` and a
    ``kernel_size`` path of ``width`` (0: none), BNs folded, paths merged and padded."""
    torch.manual_seed(0)
    other = 3 if kernel_size != 3 else 5
    block = SearchingBlock(
        channels, channels, kernel_widths={other: other_width, kernel_size: width}, num_tokens=0
    )
    return fuse_for_inference(block.eval(), DEPLOY_CHANNEL_MULTIPLE)
