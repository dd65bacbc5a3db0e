"""The ``hrnas`` command line: ``hrnas flops | search | train | ablate | export | bench | study | compare | report | nnictl``.

Each subcommand prints a human summary, or with ``--json`` exactly one JSON object on stdout;
logs go to stderr. The CLI is the composition root: it imports the spaces, tasks and analysis
lazily, so ``nni_hrnas`` itself depends on none of them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from nni_hrnas.logs import setup_cli_logging
from nni_hrnas.run_folder import RunFolder, SearchResult
from search_spaces import (
    PRESETS,
    ConfigError,
    HRNASConfig,
    HRNASNetwork,
    choice_maxima,
    get_preset,
    labels,
    load_arch,
)
from search_spaces.config import check_input_size, parse_space_overrides
from search_spaces.pointpillars import RPN_PRESETS, PointPillarsRPN
from search_spaces.presets import PLUGIN_PRESETS

_log = logging.getLogger("nni_hrnas")
#: The search settings ``hrnas demo`` takes as ``hrnas search`` does (the rest it sets itself).
DEMO_SEARCH_FLAGS = ("min_path_width", "final_lr_scale")


@dataclass(frozen=True)
class DemoDefaults:
    """What ``hrnas demo`` (and so ``make demo``) searches when not told otherwise.

    A budget of a tenth of the supernet's MACs, the size at which issue 10 judges the demo; no kernel
    path thinner than 8 channels, which at a tenth gave the more accurate and faster network on four
    seeds of five; the task's own epochs and final learning rate (half the task's: at a tenth it gave
    the more accurate network on four seeds of five, a quarter and twice it the less accurate on every
    seed screened). The measurements: ``benchmarks/BASELINES.md``, the demo at a tenth.
    """

    target_share: float | None = 0.1
    min_path_width: int = 8


DEMO = DemoDefaults()


def parse_input_size(text: str) -> tuple[int, int, int]:
    """Parse ``CxHxW`` (e.g. ``3x512x1024``)."""
    parts = text.lower().split("x")
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        size = ()
    if len(size) != 3:
        raise argparse.ArgumentTypeError(f"expected CxHxW such as 3x512x1024, got {text!r}")
    return size  # type: ignore[return-value]


def _share(text: str) -> float | None:
    """Parse a share in (0, 1] (``0.1``), or ``none``."""
    if text.strip().lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a share in (0, 1] such as 0.1, or none, got {text!r}")
    return value


def _format_count(value: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3f}{unit}"
    return f"{value:.0f}"


def aggregate(groups: dict) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """Sum a network's cost groups (``stage3.b1``, ``fusion2.b0``, ``stem``, ``head``) per stage and per branch."""
    stages: dict[str, dict[str, int]] = {}
    branches: dict[str, dict[str, int]] = {}
    for name, cost in groups.items():
        stage, _, branch = name.partition(".")
        for table, key in ((stages, stage), (branches, branch or stage)):
            entry = table.setdefault(key, {"macs": 0, "params": 0})
            entry["macs"] += cost.macs
            entry["params"] += cost.params
    return stages, branches


def cmd_flops(args: argparse.Namespace) -> int:
    """MACs and params of a preset's supernet, or a task's (or of an architecture file) at an input size."""
    import torch

    if args.preset is None and args.task is None:
        print(
            "hrnas flops: error: name a space: --preset NAME or --task NAME (its default space)",
            file=sys.stderr,
        )
        return 2
    if args.preset in RPN_PRESETS:
        config = RPN_PRESETS[args.preset]
        with torch.device("meta"):
            network = PointPillarsRPN(config)
        return _flops_fixed(
            args,
            network,
            config,
            "PointPillars RPN, fixed",
            " (2D network and head; the pillar net's parameters included)",
        )
    if args.preset in PLUGIN_PRESETS:
        config = PLUGIN_PRESETS[args.preset]
        with torch.device("meta"):
            network = config.build()
        return _flops_fixed(args, network, config, "Table 8 plug-in network, fixed", "")
    overrides = parse_space_overrides(args.space)
    if args.no_transformer:
        overrides["transformer"] = False
    if args.task is not None:  # the space hrnas search builds for the task
        from nni_hrnas.tasks.registry import get_task

        spec = get_task(args.task)
        args.preset = args.preset or spec.default_preset
        overrides = spec.space_overrides(args.preset, overrides)
    config = get_preset(args.preset, **overrides)
    input_size = check_input_size(config, args.input or config.input_size)
    sample = choice_maxima(config)
    if args.arch:
        sample = load_arch(args.arch, config)
    with torch.device("meta"):  # shapes only: nothing is allocated or run
        network = HRNASNetwork(config, sample)
    groups = network.cost_breakdown(input_size)
    total = network.cost(input_size)
    stages, branches = aggregate(groups)
    result = {
        "preset": args.preset,
        "task": args.task,
        "space": args.space,
        "input": list(input_size),
        "transformer": config.transformer.placement != "none",
        "macs": total.macs,
        "params": total.params,
        "interp_elements": total.interp,
        "norm_act_elements": total.norm_act,
        "stages": stages,
        "branches": branches,
        "groups": {name: {"macs": c.macs, "params": c.params} for name, c in groups.items()},
    }
    if args.json:
        print(json.dumps(result))
        return 0
    size = "x".join(map(str, input_size))
    blocks = list(network.searching_blocks())
    with_tokens = sum(block.transformer is not None for _, block in blocks)
    print(
        f"{args.preset}: {config.task} head with {config.num_outputs} outputs; stem {config.stem_channels} ch, "
        f"{config.layout} layout of parallel modules with branches {[s.branches for s in config.stages]}, "
        f"channels {[list(s.channels) for s in config.stages]}"
    )
    print(
        f"{len(blocks)} searching blocks ({with_tokens} with transformers), {len(sample)} width choices; "
        f"kernels {list(config.kernels)}, expansion {config.expansion}"
    )
    print(
        f"{args.preset} at {size}{'' if not args.no_transformer else ' (no transformers)'}: "
        f"{_format_count(total.macs)} MACs, {_format_count(total.params)} params"
    )
    print("MACs are multiply-accumulates of conv, linear, matmul and attention (what the paper calls FLOPs);")
    print(
        f"bilinear resizes ({_format_count(total.interp)} output elements) and BN/LN/activations "
        f"({_format_count(total.norm_act)} elements) are counted apart."
    )
    for title, table in (("stage", stages), ("branch", branches)):
        print(f"\n{'per ' + title:<12}{'MACs':>12}{'params':>12}")
        for key, entry in table.items():
            print(f"{key:<12}{_format_count(entry['macs']):>12}{_format_count(entry['params']):>12}")
    return 0


def _flops_fixed(args: argparse.Namespace, network, config, kind: str, note: str) -> int:
    """MACs and params of a fixed network (a PointPillars RPN, a Table 8 plug-in network) per group."""

    size = tuple(args.input or config.input_size)
    try:
        groups = network.cost_breakdown(size)
    except ValueError as exc:
        raise ConfigError("input", size, str(exc)) from None
    total = network.cost(size)
    if args.json:
        print(
            json.dumps(
                {
                    "preset": args.preset,
                    "input": list(size),
                    "macs": total.macs,
                    "params": total.params,
                    "groups": {k: {"macs": c.macs, "params": c.params} for k, c in groups.items()},
                }
            )
        )
        return 0
    print(
        f"{args.preset} ({kind}) at {'x'.join(map(str, size))}: {_format_count(total.macs)} MACs, "
        f"{_format_count(total.params)} params{note}"
    )
    for key, c in groups.items():
        print(f"{key:<12}{_format_count(c.macs):>12}{_format_count(c.params):>12}")
    return 0


def architecture_summary(result: SearchResult) -> list[str]:
    """Lines describing a searched architecture per branch: kept / supernet units and MACs."""
    import torch

    config = HRNASConfig(**result.config)
    with torch.device("meta"):
        network = HRNASNetwork(config, {k: int(v) for k, v in result.arch.items()})
    _, branches = aggregate(network.cost_breakdown())
    kept: dict[str, list[int]] = {}
    for slot, _ in network.searching_blocks():
        key = slot.group.partition(".")[2] or slot.group
        totals = kept.setdefault(key, [0, 0, 0, 0])  # channels kept, channels max, tokens kept, tokens max
        for label, value in result.arch.items():
            if labels.split_label(label)[0] == slot.label:
                maximum = (result.arch_max or {}).get(label, value)
                index = 2 if labels.is_tokens(label) else 0
                totals[index] += value
                totals[index + 1] += maximum
    lines = [f"{'branch':<8}{'MACs':>12}{'params':>12}   depthwise channels kept   tokens kept"]
    for key, entry in branches.items():
        c, cm, t, tm = kept.get(key, [0, 0, 0, 0])
        units = f"{c:>6} / {cm:<6}" if cm else f"{'-':>15}"
        tokens = f"{t:>4} / {tm:<4}" if tm else "-"
        lines.append(
            f"{key:<8}{_format_count(entry['macs']):>12}{_format_count(entry['params']):>12}"
            f"   {units:<24}{tokens}"
        )
    return lines


def cmd_demo(args: argparse.Namespace) -> int:
    """Search the embedded digits_seg task, train the obvious alternatives, print a summary, write a report.

    The search shrinks the supernet to ``--target-share`` of its MACs (default: :data:`DEMO`'s
    tenth), or with ``none`` to where the task's penalty leaves it. The alternatives are what a user
    would otherwise pick: the supernet itself and the supernet slimmed uniformly (every width x one
    factor) to the searched network's MACs, each trained from scratch on the same data with the
    search's recipe for the same wall time as the whole search.
    """
    from pathlib import Path

    from analysis.collect import BASELINE_NAMES
    from nni_hrnas import baselines
    from nni_hrnas.search import SearchError, SearchSettings, run_search, search_space
    from nni_hrnas.settings import from_args
    from nni_hrnas.tasks.registry import get_task

    out = Path(args.out)
    spec = get_task("digits_seg")
    space = search_space(SearchSettings(task=spec.name))  # the search's, for the budget and the baselines
    target_macs = None
    if args.target_share is not None:
        supernet_macs = baselines.sample_macs(space, space.max_sample(), spec.input_size())
        target_macs = round(args.target_share * supernet_macs)
    try:
        settings = SearchSettings(
            task=spec.name,
            out=str(out),
            resume=RunFolder(out).has_checkpoint(),
            seed=args.seed,
            target_macs=target_macs,
            epochs=args.epochs,
            **from_args(SearchSettings, {name: getattr(args, name) for name in DEMO_SEARCH_FLAGS}),
        )
        result = run_search(settings)
    except SearchError as error:  # a bad flag or run folder: one line, nothing written
        print(f"hrnas demo: error: {error}", file=sys.stderr)
        return 2
    wall = float(result.run_seconds)
    references: list[tuple[str, baselines.TrainedRun, str]] = []
    if args.baselines:
        budget = f"same time as the search ({wall:.0f} s)"
        for kind, arch in (
            ("supernet", space.max_sample()),
            ("uniform", baselines.uniform_sample(space, result.macs, spec.input_size())),
        ):
            _log.info("training the %s for %.0f s (same data and recipe as the search)", kind, wall)
            run = baselines.train_for_time(
                settings.task, space, arch, wall, name=kind, seed=args.seed, recipe="search"
            )
            references.append((kind, run, budget))
        baselines.write_baselines(out / "baselines", settings.task, spec.metric, references)
    from analysis.report import write_report

    report = out / "report.html"
    sources = [str(out)] + ([str(out / "baselines")] if references else [])
    write_report(sources, report, title="HR-NAS on digits_seg (embedded demo)")
    cost = result.search_cost
    name = result.metric_name
    shrink = result.shrink_epochs or result.epochs
    print(
        f"HR-NAS search of digits_seg ({result.epochs} epochs: {shrink} shrinking, "
        f"{result.epochs - shrink} training the final architecture"
        + (
            f" at {result.final_lr_scale:g}x the learning rate"
            if result.final_lr_scale not in (None, 1.0)
            else ""
        )
        + f"; lambda {result.lambda_}, "
        f"eps {result.eps}"
        + (
            f"; budget {_format_count(target_macs)} MACs, {args.target_share:.0%} of the supernet's):"
            if target_macs
            else "):"
        )
    )
    print(
        f"  {name} {result.metric:.4f}; {_format_count(result.macs)} MACs "
        f"({result.macs / result.macs_max:.1%} of the supernet's {_format_count(result.macs_max)}), "
        f"{_format_count(result.params)} params"
    )
    print(
        f"  search cost: {wall:.0f} s wall, {cost.epochs} epochs, "
        f"{cost.images_seen} images, {cost.mac_epochs / 1e6:.1f} M MAC-epochs"
    )
    if references:
        print(f"  the alternatives, trained from scratch on the same data for the same {wall:.0f} s:")
        for kind, run, _ in references:
            ratio = result.metric / run.metric if run.metric > 0 else float("inf")
            print(
                f"    {BASELINE_NAMES[kind]:<46} {_format_count(run.macs):>8} MACs, {run.epochs:>3} epochs: "
                f"{name} {run.metric:.4f} (search / this: {ratio:.2f}x)"
            )
    print("\n".join("  " + line for line in architecture_summary(result)))
    print(f"run folder: {out}\nreport: {report.resolve()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``hrnas`` parser: one subcommand per command, each module adding its own flags."""
    parser = argparse.ArgumentParser(
        prog="hrnas", description="HR-NAS for NNI: search spaces, search, analysis."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    flops = sub.add_parser(
        "flops",
        help="MACs and params of a preset (per stage and branch)",
        description="Exact MACs (the paper's 'FLOPs') and params, computed analytically.",
    )

    flops.add_argument(
        "--preset",
        choices=sorted(PRESETS) + sorted(RPN_PRESETS) + sorted(PLUGIN_PRESETS),
        help="space preset (or a fixed network: a PointPillars RPN, a Table 8 plug-in network)",
    )
    from nni_hrnas.tasks.registry import get_task, task_names

    flops.add_argument(
        "--task",
        choices=task_names(),
        help="the task's default space, as hrnas search builds it (its preset, which --preset may name, "
        "with the task's own overrides: digits_seg's and digits_kp's have 3x3 paths only and no transformer)",
    )
    flops.add_argument(
        "--input",
        type=parse_input_size,
        default=None,
        help="input size CxHxW (default: the preset's paper input size)",
    )
    flops.add_argument("--no-transformer", action="store_true", help="the space without transformers")
    flops.add_argument(
        "--space",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a field of the preset's config, repeatable (as hrnas search --space)",
    )
    flops.add_argument("--arch", default=None, help="arch.json of a searched network (default: the supernet)")
    flops.add_argument("--json", action="store_true", help="print one JSON object")
    flops.set_defaults(func=cmd_flops)

    from nni_hrnas.deploy import add_bench_arguments, add_export_arguments, cmd_bench, cmd_export
    from nni_hrnas.search import add_search_arguments, cmd_search

    search = sub.add_parser(
        "search",
        help="run one HR-NAS search and write a run folder",
        description="Resource-aware progressive shrinking on a task's space.",
    )
    add_search_arguments(search).set_defaults(func=cmd_search)
    export = sub.add_parser(
        "export",
        help="check a run folder reloads and export it (torch.export, ONNX)",
        description="Copy a run folder's files; with --format, also a standalone torch.export "
        "program and/or an ONNX file with a model card, each checked against the "
        "searched network.",
    )
    add_export_arguments(export).set_defaults(func=cmd_export)
    bench = sub.add_parser(
        "bench", help="latency of a run or export folder (median, percentiles; one JSON line)"
    )
    add_bench_arguments(bench).set_defaults(func=cmd_bench)

    from nni_hrnas.tuning.study import add_study_arguments, cmd_study

    study = sub.add_parser("study", help="an Optuna study of lambda and eps (each trial: one search)")
    add_study_arguments(study).set_defaults(func=cmd_study)

    from nni_hrnas.compare import add_compare_arguments, cmd_compare

    compare = sub.add_parser("compare", help="HR-NAS against NNI's strategies under one budget")
    add_compare_arguments(compare).set_defaults(func=cmd_compare)

    from nni_hrnas.config_check import add_check_arguments, cmd_check

    check = sub.add_parser(
        "check",
        help="check an nnictl config (keys, types, tuner, search space, data, port)",
        description="Report what nnictl create would trip on, each with its fix.",
    )
    add_check_arguments(check).set_defaults(func=cmd_check)

    from nni_hrnas.ablate import add_ablate_arguments, cmd_ablate
    from nni_hrnas.train import add_train_arguments, cmd_train

    train = sub.add_parser("train", help="train a fixed network (an arch, a preset, a plug-in network)")
    add_train_arguments(train).set_defaults(func=cmd_train)
    ablate = sub.add_parser(
        "ablate", help="the paper's ablations: space (Table 6), positional (7), plugin (8)"
    )
    add_ablate_arguments(ablate).set_defaults(func=cmd_ablate)

    demo = sub.add_parser("demo", help="search the embedded digits task, print a summary, write a report")
    demo.add_argument("--out", default="runs/demo", help="run folder (resumed if it holds a checkpoint)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument(
        "--target-share",
        type=_share,
        default=DEMO.target_share,
        metavar="S",
        help=f"a MACs budget as a share of the supernet's (default: {DEMO.target_share}); none: no budget, "
        "the task's penalty decides (`hrnas search --task digits_seg` is that search with the task's "
        "own minimum path width)",
    )
    seg_search = get_task("digits_seg").search
    demo.add_argument(
        "--epochs",
        type=int,
        default=None,
        help=f"search epochs, {seg_search.shrink_epochs} of them shrinking (default: the task's, {seg_search.epochs})",
    )
    # the search's own setting with the demo's default (SearchSettings validates it, as for `search`)
    demo.add_argument(
        "--min-path-width",
        type=int,
        default=DEMO.min_path_width,
        metavar="N",
        help="no kernel path (transformer) thinner than N channels (tokens) is left; pruning removes it "
        f"whole (default: {DEMO.min_path_width}; 1 is the paper's fine-grained shrinking)",
    )
    demo.add_argument(
        "--final-lr-scale",
        type=float,
        default=None,
        metavar="K",
        help="train the final architecture with the task's learning rates times K "
        f"(default: the task's, {seg_search.final_lr_scale})",
    )
    demo.add_argument(
        "--no-baselines",
        dest="baselines",
        action="store_false",
        help="skip training the supernet and the uniformly slimmed network for comparison",
    )
    demo.set_defaults(func=cmd_demo)

    # parsed by analysis.cli.report_main (see main); listed here for `hrnas --help`
    sub.add_parser("report", add_help=False, help="HTML report of results (see hrnas report --help)")
    sub.add_parser(
        "nnictl", add_help=False, help="NNI's nnictl, its web server on 127.0.0.1 (--host HOST to expose it)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hrnas`` console command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["report"]:  # the analysis package parses its own arguments, --help included
        from analysis.cli import report_main

        return report_main(argv[1:])
    if argv[:1] == ["nnictl"]:  # nnictl's own arguments, passed through
        from nni_hrnas.nnictl import main as nnictl_main

        return nnictl_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_cli_logging(args.verbose)

    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError) as error:
        print(f"hrnas {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
