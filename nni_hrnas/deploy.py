"""Deploy a searched network: a standalone PyTorch program, an ONNX file and a model card.

``hrnas export RUN --format torch|onnx|all [--out DIR]`` writes, into DIR (default ``RUN/export``)::

    DIR/model.pt2          a torch.export program: torch.export.load(path).module()(x), with torch alone
    DIR/model.onnx         torch's ONNX exporter, simplified by onnxslim, checked by onnx's checker
    DIR/model_card.json    task, input and normalisation, outputs, MACs, params, metric, search, checks
    DIR/model_card.md      the same for people, with how to load each file
    DIR/arch.json, DIR/model.safetensors, DIR/result.json   the run folder's files (nni_hrnas.run_folder)

Without ``--format`` only the last three are copied (what ``hrnas export`` always did).
``--fuse`` exports the inference form (:func:`~search_spaces.ops.fuse.fuse_for_inference`: BNs folded,
each block's kernel paths merged). Every exported file is loaded back and run on random inputs;
the export fails, writing nothing, if any output differs from the searched network's (in PyTorch,
unfused) by more than :data:`TOLERANCE`. A DIR that already holds another model is refused unless
``force=True``; the files are written in a staging folder and moved in only once all checks pass.

Why ``torch.export`` and not TorchScript: ``torch.jit.script`` rejects the network (it stops at the
attention's star-unpacked sizes, and the forward is plain Python over the space's configuration
dataclass; scriptable ops would constrain every op of the project), and ``torch.jit.trace`` records the same single path as ``torch.export`` but without
guards, so a call the trace does not fit runs silently wrong instead of failing. ``torch.export``
runs the Python forward once at the exported input size, so every searched network exports:
removed kernel paths and zero-token transformers are absent modules, a degenerate block is its
identity or 1x1 shortcut, and the task head is ordinary code. ``--dynamic-batch`` makes the batch
a symbolic dimension (checked by guards when called); height and width stay those exported.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nni_hrnas.latency import RUNTIMES, inference_runner, onnx_bytes, onnxruntime_runner, time_latency
from nni_hrnas.run_folder import (
    ARCH_FILE,
    BENCH_FILE,
    RESULT_FILE,
    WEIGHTS_FILE,
    RunFolder,
    SearchResult,
    atomic_write_json,
)
from nni_hrnas.tasks.registry import input_normalisation
from search_spaces.config import check_input_size
from search_spaces.ops.fuse import DEPLOY_CHANNEL_MULTIPLE, fuse_for_inference

FORMATS = ("torch", "onnx")
TORCH_FILE = "model.pt2"
ONNX_FILE = "model.onnx"
CARD_JSON = "model_card.json"
CARD_MD = "model_card.md"
#: ``hrnas bench --record`` appends its JSON line here, in the measured folder; the report reads it
BENCH_RECORD = BENCH_FILE
#: ONNX opsets we export to: torch's exporter writes opset 18 natively (and converts up); onnxruntime
#: 1.2x runs up to 23. Lower opsets would go through onnx's version converter, which fails on
#: several of the ops here (e.g. LayerNormalization, opset 17+).
OPSETS = range(18, 24)
#: Largest absolute difference accepted between an exported form's outputs and the searched network's.
TOLERANCE = 1e-4
#: Batch sizes every export is checked at: 1 and, with a dynamic batch, two others. A dynamic batch is
#: exported at an example of batch 2: torch.export specialises dimensions whose example size is 1.
CHECK_BATCHES = (1,)
DYNAMIC_CHECK_BATCHES = (2, 1, 5)


class DeployError(ValueError):
    """An export or benchmark cannot proceed; the message names the problem and the fix."""


@dataclass(frozen=True)
class ExportSettings:
    """What ``hrnas export`` writes. ``formats`` empty: only copy the run folder's files."""

    formats: tuple[str, ...] = ()
    fuse: bool = False
    pad_channels: int = DEPLOY_CHANNEL_MULTIPLE  # with fuse: kernel path widths zero-padded to a multiple
    input_size: tuple[int, int, int] | None = None  # default: the size the search ran at
    opset: int = 18
    dynamic_batch: bool = False
    force: bool = False
    tolerance: float = TOLERANCE

    def __post_init__(self) -> None:
        unknown = [f for f in self.formats if f not in FORMATS]
        if unknown:
            raise DeployError(f"invalid format={unknown[0]!r}: expected torch, onnx or all")
        if not isinstance(self.opset, int) or self.opset not in OPSETS:
            raise DeployError(
                f"invalid opset={self.opset!r}: this exporter supports opsets "
                f"{OPSETS.start}..{OPSETS.stop - 1} (torch's exporter and onnxruntime); "
                f"e.g. --opset {OPSETS.start}"
            )
        if not self.tolerance > 0:
            raise DeployError(f"invalid tolerance={self.tolerance!r}: expected a positive number")
        if not isinstance(self.pad_channels, int) or self.pad_channels < 1:
            raise DeployError(
                f"invalid pad_channels={self.pad_channels!r}: expected a whole number >= 1 "
                "(1: no padding), e.g. --pad-channels 8"
            )

    @staticmethod
    def parse_formats(text: str | None) -> tuple[str, ...]:
        """``torch``, ``onnx``, ``all`` or a comma-separated list; ``None`` gives no format."""
        if text is None:
            return ()
        names = [part.strip().lower() for part in text.split(",") if part.strip()]
        return FORMATS if "all" in names else tuple(dict.fromkeys(names))


def run_fingerprint(run_dir: Path) -> str:
    """The identity of a searched model: SHA-256 over its weights file and its architecture."""
    folder = RunFolder(run_dir)
    digest = hashlib.sha256()
    digest.update(folder.weights_path.read_bytes())
    digest.update(json.dumps(folder.load_arch(), sort_keys=True).encode())
    return digest.hexdigest()


def _held_fingerprint(out: Path) -> str | None:
    """The model ``out`` already holds: its card's fingerprint, that of its copied files, or "unknown"."""
    if not out.is_dir():
        return None
    card = out / CARD_JSON
    if card.is_file():
        try:
            return str(json.loads(card.read_text())["fingerprint"])
        except (ValueError, KeyError, TypeError):
            return "unknown"
    held = RunFolder(out)
    if held.weights_path.is_file() and held.arch_path.is_file():
        try:
            return run_fingerprint(out)
        except ValueError:
            return "unknown"
    if any((out / name).exists() for name in (TORCH_FILE, ONNX_FILE, WEIGHTS_FILE, ARCH_FILE)):
        return "unknown"
    return None


def _check_destination(out: Path, fingerprint: str, force: bool) -> None:
    held = _held_fingerprint(out)
    if held is not None and held != fingerprint and not force:
        which = "a model it cannot identify" if held == "unknown" else f"a different model ({held[:12]})"
        raise DeployError(
            f"{out} already holds {which}, not this run's ({fingerprint[:12]}); choose another "
            "--out, or pass --force to replace it (nothing was overwritten)"
        )


def _max_diff(run: Any, reference: nn.Module, inputs: list[torch.Tensor]) -> float:
    worst = 0.0
    with torch.no_grad():
        for x in inputs:
            got = torch.as_tensor(run(x))
            want = reference(x)
            if got.shape != want.shape:
                raise DeployError(
                    f"exported output shape {tuple(got.shape)} != the searched network's "
                    f"{tuple(want.shape)} at input {tuple(x.shape)}"
                )
            worst = max(worst, float((got.float() - want.float()).abs().max()))
    return worst


def _batch_dim(dynamic: bool) -> tuple[dict[int, Any], ...] | None:
    # min 1: batch 1 must stay valid (torch.export would otherwise specialise sizes 0 and 1)
    return ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic else None


def export_torch(model: nn.Module, example: torch.Tensor, path: Path, dynamic_batch: bool = False) -> None:
    """Write ``model`` (eval mode) as a ``torch.export`` program loadable with torch alone."""
    # a copy: tracing runs the forward on fake tensors, and the transformers cache their positional
    # encodings on the module; the caller's network must not keep a fake one
    program = torch.export.export(
        copy.deepcopy(model).eval(), (example,), dynamic_shapes=_batch_dim(dynamic_batch), strict=False
    )
    torch.export.save(program, str(path))


def export_onnx(
    model: nn.Module, example: torch.Tensor, path: Path, opset: int = 18, dynamic_batch: bool = False
) -> dict[str, Any]:
    """Write ``model`` as ONNX with torch's exporter, simplified by onnxslim and checked by onnx.

    Returns the node counts before and after onnxslim (what simplification removed).
    """
    import onnx
    import onnxslim

    # optimize=False: onnxscript's optimizer failed on some of these graphs (an inliner pass error);
    # onnxslim does the constant folding and dead-node removal instead
    program = torch.onnx.export(
        copy.deepcopy(model).eval(),
        (example,),
        dynamo=True,
        opset_version=opset,
        dynamic_shapes=_batch_dim(dynamic_batch),
        input_names=["input"],
        output_names=["output"],
        optimize=False,
        verbose=False,
    )
    exported = program.model_proto
    nodes_exported = len(exported.graph.node)  # before: onnxslim may change the proto it is given
    slim = onnxslim.slim(exported)
    onnx.checker.check_model(slim, full_check=True)  # also runs onnx's strict shape inference
    onnx.save(slim, str(path))
    return {"nodes_exported": nodes_exported, "nodes": len(slim.graph.node), "opset": opset}


def _task_io(task: str, config: Any, size: tuple[int, int, int]) -> dict[str, Any]:
    """The input's normalisation (the task's data: :func:`~nni_hrnas.tasks.registry.input_normalisation`)
    and the output's meaning (the network's head: ``config.head.output``)."""
    normalisation = input_normalisation(task)
    _, height, width = size
    return {
        "input": {
            "shape": ["B", *size],
            "dtype": "float32",
            "layout": "NCHW",
            "normalisation": f"(({normalisation.pixels}) - mean) / std per channel",
            "mean": list(normalisation.mean),
            "std": list(normalisation.std),
        },
        "output": config.head.output(height, width),
    }


def _card_markdown(card: dict[str, Any]) -> str:
    io_, search = card["io"], card["search"]
    lines = [
        f"# {card['task']} network searched with HR-NAS",
        "",
        f"- input: {io_['input']['shape']} float32, NCHW; normalisation {io_['input']['normalisation']}, "
        f"mean {io_['input']['mean']}, std {io_['input']['std']}",
        f"- output: {io_['output']['shape']}: {io_['output']['meaning']}",
        f"- cost at {'x'.join(map(str, card['input_size']))}: {card['macs']:,} MACs, {card['params']:,} params",
        f"- {card['metric_name']}: {card['metric']}"
        if card.get("metric") is not None
        else "- metric: not recorded",
        f"- form: {_form(card)}; batch {'dynamic' if card['dynamic_batch'] else 'fixed at 1'}",
        f"- search: preset {search.get('preset')}, lambda {search.get('lambda')}, eps {search.get('eps')}, "
        f"{search.get('epochs')} epochs, path overhead {search.get('path_overhead')}; "
        f"{search.get('search_seconds') or 0:.0f} s, cost {json.dumps(search.get('search_cost'))}",
        f"- model fingerprint (weights + arch, SHA-256): {card['fingerprint']}",
        "",
        "## Files and checks",
        "",
    ]
    for name, info in card["files"].items():
        lines.append(
            f"- `{name}`: max abs difference to the searched network {info['max_abs_diff']:.2e} "
            f"(tolerance {card['tolerance']:g}, batches {card['checked_batches']})"
        )
    lines += ["", "## How to load", "", "```python"]
    if TORCH_FILE in card["files"]:
        lines += [
            "import torch  # torch alone: no NNI, no nni_hrnas",
            f"model = torch.export.load('{TORCH_FILE}').module()",
            f"y = model(torch.randn(1, {', '.join(map(str, card['input_size']))}))",
        ]
    if ONNX_FILE in card["files"]:
        lines += [
            "import numpy as np, onnxruntime as ort",
            f"session = ort.InferenceSession('{ONNX_FILE}', providers=['CPUExecutionProvider'])",
            f"y = session.run(None, {{'input': np.zeros((1, {', '.join(map(str, card['input_size']))}), "
            "np.float32)})[0]",
        ]
    lines += [
        f"# with this project: nni_hrnas.search.load_searched_model(folder) reloads {ARCH_FILE} + "
        f"{WEIGHTS_FILE}",
        "```",
        "",
    ]
    return "\n".join(lines)


def _card_search(result: SearchResult) -> dict[str, Any]:
    """The model card's ``search`` section: how the network was searched (None where the run did not say)."""
    cost = result.search_cost
    return {
        "preset": result.preset,
        "lambda": result.lambda_,
        "eps": result.eps,
        "epochs": result.epochs,
        "shrink_epochs": result.shrink_epochs,
        "prune_every": result.prune_every,
        "path_overhead": result.path_overhead,
        "target_macs": result.target_macs,
        "seed": result.seed,
        "search_seconds": result.search_seconds,
        "search_cost": cost.to_dict() if cost else None,
        "macs_max": result.macs_max,
    }


def _form(card: dict[str, Any]) -> str:
    if not card["fuse"]:
        return "as searched (eval mode)"
    pad = card.get("pad_channels", 1)
    padding = f", each kernel path zero-padded to a multiple of {pad} channels" if pad > 1 else ""
    return f"inference (BNs folded, kernel paths merged{padding})"


def export_deployment(
    run_dir: str | Path, out_dir: str | Path | None = None, settings: ExportSettings | None = None
) -> dict[str, Any]:
    """Export a run folder (see the module docstring); returns what the model card says, and ``out``.

    Raises :class:`DeployError` (bad settings, another model in ``out_dir``, outputs that differ),
    ``FileNotFoundError`` (a run folder without weights) or ``ConfigError`` (an input size the
    network cannot take). Nothing in ``out_dir`` is replaced unless every check passed.
    """
    settings = settings or ExportSettings()
    folder = RunFolder(run_dir)
    run_dir = folder.path
    out = Path(out_dir) if out_dir is not None else folder.export_dir
    model = folder.load_model()
    result = folder.load_result()
    config = model.config
    size = check_input_size(config, tuple(settings.input_size or result.input_size or config.input_size))
    fingerprint = run_fingerprint(run_dir)
    _check_destination(out, fingerprint, settings.force)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".hrnas-export-", dir=out))
    try:
        files = _write_formats(
            model,
            fuse_for_inference(model, settings.pad_channels) if settings.fuse else model,
            size,
            settings,
            staging,
        )
        card = dict(
            format="hrnas-model-card",
            version=1,
            fingerprint=fingerprint,
            run_dir=str(run_dir),
            task=result.task or config.task,
            preset=result.preset,
            input_size=list(size),
            macs=model.cost(size).macs,
            params=sum(p.numel() for p in model.parameters()),
            metric=result.metric,
            metric_name=result.metric_name or "metric",
            io=_task_io(str(result.task or config.task), config, size),
            fuse=settings.fuse,
            pad_channels=settings.pad_channels if settings.fuse else 1,
            dynamic_batch=settings.dynamic_batch,
            opset=settings.opset if ONNX_FILE in files else None,
            tolerance=settings.tolerance,
            checked_batches=list(DYNAMIC_CHECK_BATCHES if settings.dynamic_batch else CHECK_BATCHES),
            files=files,
            arch=result.arch,
            search=_card_search(result),
        )
        if settings.formats:
            atomic_write_json(staging / CARD_JSON, card)
            (staging / CARD_MD).write_text(_card_markdown(card))
        # every check passed: move the new files in, drop deploy files this export did not write (another
        # model's, when forced, or another format's), then copy the run folder's own files (as before)
        written = {path.name for path in staging.iterdir()}
        if settings.formats or _held_fingerprint(out) not in (None, fingerprint):
            for name in {TORCH_FILE, ONNX_FILE, CARD_JSON, CARD_MD} - written:
                (out / name).unlink(missing_ok=True)
        for name in written:
            os.replace(staging / name, out / name)
        if out.resolve() != run_dir.resolve():
            folder.copy_to(out, result)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not any(out.iterdir()):
            out.rmdir()
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return dict(card, out=str(out))


def _write_formats(
    reference: nn.Module, form: nn.Module, size: tuple[int, int, int], settings: ExportSettings, staging: Path
) -> dict[str, dict[str, Any]]:
    generator = torch.Generator().manual_seed(0)
    batches = DYNAMIC_CHECK_BATCHES if settings.dynamic_batch else CHECK_BATCHES
    inputs = [torch.randn(b, *size, generator=generator) for b in batches]
    example = inputs[0]
    files: dict[str, dict[str, Any]] = {}
    if "torch" in settings.formats:
        export_torch(form, example, staging / TORCH_FILE, settings.dynamic_batch)
        program = torch.export.load(str(staging / TORCH_FILE)).module()
        files[TORCH_FILE] = {"runtime": "torch", "max_abs_diff": _max_diff(program, reference, inputs)}
    if "onnx" in settings.formats:
        info = export_onnx(form, example, staging / ONNX_FILE, settings.opset, settings.dynamic_batch)
        import onnxruntime as ort

        session = ort.InferenceSession(str(staging / ONNX_FILE), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        diff = _max_diff(lambda x: session.run(None, {name: x.numpy()})[0], reference, inputs)
        files[ONNX_FILE] = dict(info, runtime="onnxruntime", max_abs_diff=diff)
    for name, info in files.items():
        if not info["max_abs_diff"] <= settings.tolerance:  # NaN fails too
            raise DeployError(
                f"{name} differs from the searched network by {info['max_abs_diff']:.3g} (more than "
                f"{settings.tolerance:g}); nothing was written. Export without --fuse, or report it"
            )
    return files


# ---- latency of a run folder or an export ------------------------------------------------------


def bench(
    source: str | Path,
    runtime: str = "torch",
    batch: int = 1,
    threads: int = 1,
    warmup: int = 10,
    repeats: int = 100,
    fuse: bool = False,
    pad_channels: int = DEPLOY_CHANNEL_MULTIPLE,
) -> dict[str, Any]:
    """Latency of a run folder's network or of an export folder's files, as one JSON-able dict.

    A run folder runs in PyTorch eagerly (``fuse``: its inference form) or, with
    ``runtime="onnxruntime"``, exported to ONNX in memory first (the inference form's kernel paths
    zero-padded to a multiple of ``pad_channels``, as ``hrnas export`` does); an export folder runs its
    ``model.pt2`` (torch) or ``model.onnx`` (onnxruntime). ``threads`` intra-op threads.
    """
    source = Path(source)
    if runtime not in RUNTIMES:
        raise DeployError(f"invalid runtime={runtime!r}: expected one of {', '.join(RUNTIMES)}")
    if batch < 1 or threads < 1 or warmup < 0 or repeats < 1 or pad_channels < 1:
        raise DeployError(
            f"need batch >= 1, threads >= 1, warmup >= 0, repeats >= 1, pad-channels >= 1; got "
            f"batch={batch}, threads={threads}, warmup={warmup}, repeats={repeats}, "
            f"pad-channels={pad_channels}"
        )
    torch.set_num_threads(threads)
    if (source / CARD_JSON).is_file():
        card = json.loads((source / CARD_JSON).read_text())
        size, macs, form = tuple(card["input_size"]), card["macs"], "fused" if card["fuse"] else "plain"
        if batch != 1 and not card["dynamic_batch"]:
            raise DeployError(
                f"{source} was exported for batch 1 only; re-export with --dynamic-batch to "
                f"measure batch {batch}"
            )
        file = TORCH_FILE if runtime == "torch" else ONNX_FILE
        if not (source / file).is_file():
            raise DeployError(
                f"{source / file} is missing; export it with hrnas export RUN --format "
                f"{'torch' if runtime == 'torch' else 'onnx'}"
            )
        x = torch.randn(batch, *size)
        if runtime == "torch":
            run = inference_runner(torch.export.load(str(source / file)).module(), x)
        else:
            run = onnxruntime_runner(str(source / file), x, threads)
        kind = "export"
    elif (folder := RunFolder(source)).has_result() or folder.weights_path.is_file():
        model = folder.load_model()
        size = tuple(folder.load_result().input_size or model.config.input_size)
        macs, form = model.cost(size).macs, "fused" if fuse else "plain"
        model = fuse_for_inference(model, pad_channels) if fuse else model
        x = torch.randn(batch, *size)
        if runtime == "torch":
            run = inference_runner(model, x)
        else:
            run = onnxruntime_runner(onnx_bytes(model, x), x, threads)
        kind = "run"
    else:
        raise DeployError(
            f"{source} is neither a run folder ({RESULT_FILE}, {WEIGHTS_FILE}) nor an export "
            f"folder ({CARD_JSON}); give one written by hrnas search or hrnas export"
        )
    stats = time_latency(run, warmup=warmup, repeats=repeats)
    return dict(
        source=str(source),
        kind=kind,
        runtime=runtime,
        form=form,
        batch=batch,
        threads=threads,
        input_size=list(size),
        macs=macs,
        **stats.as_ms(),
        ms_per_image=round(stats.median * 1e3 / batch, 4),
    )


# ---- command line ------------------------------------------------------------------------------


def add_export_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags of ``hrnas export`` (the run folder copy, and the deployable formats)."""
    from nni_hrnas.cli import parse_input_size

    parser.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by hrnas search")
    parser.add_argument("--out", help="export folder (default: RUN_DIR/export)")
    parser.add_argument(
        "--format",
        dest="formats",
        metavar="torch|onnx|all",
        help="also write a standalone torch.export program (model.pt2), an ONNX file (model.onnx) "
        "or both, with model_card.md/json; each checked against the searched network",
    )
    parser.add_argument(
        "--fuse",
        action="store_true",
        help="export the inference form (BNs folded, kernel paths merged): the same outputs, fewer ops",
    )
    parser.add_argument(
        "--pad-channels",
        type=int,
        default=DEPLOY_CHANNEL_MULTIPLE,
        metavar="N",
        help="with --fuse: zero-pad each kernel path's width to a multiple of N, the same outputs; "
        f"onnxruntime's CPU convolutions are far faster on such widths (default {DEPLOY_CHANNEL_MULTIPLE}; "
        "1: no padding)",
    )
    parser.add_argument("--input", type=parse_input_size, help="input size CxHxW (default: the search's)")
    parser.add_argument(
        "--opset",
        type=int,
        default=OPSETS.start,
        help=f"ONNX opset, {OPSETS.start}..{OPSETS.stop - 1} (default {OPSETS.start})",
    )
    parser.add_argument("--dynamic-batch", action="store_true", help="any batch size (default: batch 1 only)")
    parser.add_argument("--force", action="store_true", help="replace another model already in --out")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    return parser


def cmd_export(args: argparse.Namespace) -> int:
    """``hrnas export``: returns the exit status (0 done, 2 bad input or failed check)."""
    import sys

    try:
        settings = ExportSettings(
            formats=ExportSettings.parse_formats(args.formats),
            fuse=args.fuse,
            pad_channels=args.pad_channels,
            input_size=args.input,
            opset=args.opset,
            dynamic_batch=args.dynamic_batch,
            force=args.force,
        )
        info = export_deployment(args.run_dir, args.out, settings)
    except (ValueError, FileNotFoundError, KeyError) as exc:  # DeployError, ConfigError, a broken run folder
        print(f"hrnas export: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(info))
        return 0
    checks = ", ".join(f"{name} (max abs diff {f['max_abs_diff']:.1e})" for name, f in info["files"].items())
    print(
        f"exported {args.run_dir} to {info['out']}: {info['macs']:,} MACs, {info['params']:,} params"
        + (f"; {checks}" if checks else "")
    )
    return 0


def add_bench_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags of ``hrnas bench``."""
    parser.add_argument("source", metavar="RUN_OR_EXPORT", help="a run folder or an export folder")
    parser.add_argument("--runtime", choices=RUNTIMES, default="torch", help="default torch")
    parser.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed runs first (default 10)")
    parser.add_argument("--repeats", type=int, default=100, help="timed runs (default 100)")
    parser.add_argument("--fuse", action="store_true", help="a run folder's inference form")
    parser.add_argument(
        "--pad-channels",
        type=int,
        default=DEPLOY_CHANNEL_MULTIPLE,
        metavar="N",
        help=f"with --fuse: kernel path widths zero-padded to a multiple of N (default {DEPLOY_CHANNEL_MULTIPLE})",
    )
    parser.add_argument(
        "--record",
        action="store_true",
        help=f"also append the line to RUN_OR_EXPORT/{BENCH_RECORD} "
        "(hrnas report shows the latest batch-1 record beside the MACs)",
    )
    return parser


def cmd_bench(args: argparse.Namespace) -> int:
    """``hrnas bench``: one JSON line with median and percentiles; returns the exit status."""
    import sys

    try:
        report = bench(
            args.source,
            args.runtime,
            args.batch,
            args.threads,
            args.warmup,
            args.repeats,
            args.fuse,
            args.pad_channels,
        )
    except (ValueError, FileNotFoundError) as exc:  # DeployError, ConfigError, a broken run folder
        print(f"hrnas bench: error: {exc}", file=sys.stderr)
        return 2
    line = json.dumps(report)
    if args.record:
        with open(Path(args.source) / BENCH_RECORD, "a") as record:
            record.write(line + "\n")
    print(line)
    return 0


__all__ = [
    "ExportSettings",
    "DeployError",
    "export_deployment",
    "export_torch",
    "export_onnx",
    "bench",
    "run_fingerprint",
    "FORMATS",
    "OPSETS",
    "TOLERANCE",
]
