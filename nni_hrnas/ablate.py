"""``hrnas ablate space|positional|plugin``: the paper's Tables 6, 7 and 8 as commands.

- ``space`` (Table 6) searches each :data:`~search_spaces.ablations.SPACE_VARIANTS` variant of the
  task's preset with the same search settings (:func:`nni_hrnas.search.run_search`);
- ``positional`` (Table 7) trains the task's preset at full width with each
  :data:`~search_spaces.ablations.POSITIONAL_VARIANTS` encoding, one schedule for all
  (:func:`nni_hrnas.train.run_train`);
- ``plugin`` (Table 8) trains MobileNetV2 and ShuffleNetV2 with and without the transformer
  (:data:`~search_spaces.ablations.PLUGIN_VARIANTS`; the classification or the PSP form by task).

Each row is a run folder ``OUT/VARIANT-seedS`` (``hrnas export`` and ``hrnas report`` read it); a row
whose folder has a ``result.json`` is read back, not rerun, so an interrupted ablation resumes. The
table is written as ``OUT/table6.csv`` (7, 8) and as a section of ``OUT/report.html``.

A composition module (like :mod:`nni_hrnas.search`).
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nni_hrnas.run_folder import RunFolder, SearchResult
from nni_hrnas.search import SearchError, SearchSettings, _stdout_to_stderr, run_search
from nni_hrnas.tasks.registry import get_task
from nni_hrnas.train import TrainError, TrainSettings, run_train
from search_spaces import ConfigError, get_preset
from search_spaces.ablations import ABLATIONS, PLUGIN_VARIANTS, POSITIONAL_VARIANTS, SPACE_VARIANTS
from search_spaces.config import parse_space_overrides
from search_spaces.presets import PRESETS

_log = logging.getLogger("nni_hrnas.ablate")

#: the CSV each ablation writes, and its title in the report
TABLES = {
    "space": ("table6.csv", "Table 6: the search space (each variant searched with the same settings)"),
    "positional": ("table7.csv", "Table 7: positional encodings (n = 8 tokens, s = 8; one schedule)"),
    "plugin": ("table8.csv", "Table 8: the transformer plugged into MobileNetV2 and ShuffleNetV2"),
}
REPORT_FILE = "report.html"
COLUMNS = [
    "variant",
    "setting",
    "seed",
    "params",
    "macs",
    "metric",
    "metric_name",
    "wall_seconds",
    "run_dir",
    "note",
]


class AblationError(ValueError):
    """An ablation cannot run as asked; the message names the problem and the fix."""


@dataclass
class Row:
    """One variant at one seed: its run folder's result, or why it was skipped (``note``)."""

    variant: str
    setting: str  # the --space items or the plug-in network
    seed: int
    run_dir: str
    result: SearchResult | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        r = self.result
        return {
            "variant": self.variant,
            "setting": self.setting,
            "seed": self.seed,
            "params": None if r is None else r.params,
            "macs": None if r is None else r.macs,
            "metric": None if r is None else r.metric,
            "metric_name": None if r is None else r.metric_name,
            "wall_seconds": None if r is None or r.run_seconds is None else round(r.run_seconds, 1),
            "run_dir": self.run_dir,
            "note": self.note,
        }


def _select(kind: str, names: Sequence[str] | None) -> list[str]:
    registry = ABLATIONS[kind]
    if not names:
        return list(registry)
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise AblationError(f"unknown {kind} variant {unknown[0]!r}; {kind} variants: {', '.join(registry)}")
    return list(dict.fromkeys(names))


def _preset(task: str, preset: str | None) -> str:
    """``preset``, else the task's; an unknown one is an :class:`AblationError`."""

    preset = preset or get_task(task).default_preset
    if preset not in PRESETS:
        raise AblationError(f"unknown preset {preset!r}; HR-NAS presets: {', '.join(PRESETS)}")
    return preset


def _space_problem(preset: str, items: Sequence[str]) -> str | None:
    """Why the space does not accept ``items`` (None when it does)."""
    try:
        get_preset(preset, **copy.deepcopy(parse_space_overrides(items)))
    except (ConfigError, TypeError, ValueError) as exc:
        return str(exc)
    return None


def _run_rows(
    kind: str,
    task: str,
    out: Path,
    seeds: Sequence[int],
    variants: list[str],
    setting_of: Callable[[str], str],
    problem_of: Callable[[str], str | None],
    run: Callable[[str, int, Path], SearchResult],
) -> list[Row]:
    """Each (variant, seed): read back if its run folder is finished, skipped with a note if the
    variant cannot run, else run."""
    rows = []
    for variant in variants:
        problem = problem_of(variant)
        for seed in seeds:
            run_dir = out / f"{variant}-seed{seed}"
            row = Row(variant, setting_of(variant), seed, str(run_dir))
            folder = RunFolder(run_dir)
            if folder.has_result():
                row.result = folder.load_result()
                _log.info("%s %s seed %d: done already (%s)", kind, variant, seed, run_dir)
            elif problem is not None:
                row.note = f"skipped: {problem}"
                _log.warning("%s %s skipped: %s", kind, variant, problem)
                print(f"hrnas ablate {kind}: variant {variant} skipped: {problem}", file=sys.stderr)
            else:
                _log.info("%s %s seed %d: running into %s", kind, variant, seed, run_dir)
                row.result = run(variant, seed, run_dir)
            rows.append(row)
    return rows


def ablate_space(
    task: str,
    out: Path,
    seeds: Sequence[int] = (0,),
    variants: Sequence[str] | None = None,
    epochs: int | None = None,
    preset: str | None = None,
) -> list[Row]:
    """Table 6: search each space variant of ``preset`` (default: the task's) with the same settings."""

    preset = _preset(task, preset)
    names = _select("space", variants)

    def run(variant: str, seed: int, run_dir: Path) -> SearchResult:
        settings = SearchSettings(
            task=task,
            preset=preset,
            space=parse_space_overrides(SPACE_VARIANTS[variant]) or None,
            seed=seed,
            epochs=epochs,
            out=str(run_dir),
            resume=RunFolder(run_dir).has_checkpoint(),  # an interrupted search continues
        )
        return run_search(settings)

    return _run_rows(
        "space",
        task,
        out,
        seeds,
        names,
        lambda v: " ".join(SPACE_VARIANTS[v]) or "(the preset)",
        lambda v: _space_problem(preset, SPACE_VARIANTS[v]),
        run,
    )


def ablate_positional(
    task: str,
    out: Path,
    epochs: int,
    seeds: Sequence[int] = (0,),
    variants: Sequence[str] | None = None,
    preset: str | None = None,
) -> list[Row]:
    """Table 7: train ``preset`` (default: the task's) at full width with each positional encoding,
    one schedule."""

    preset = _preset(task, preset)
    names = _select("positional", variants)

    def run(variant: str, seed: int, run_dir: Path) -> SearchResult:
        items = list(POSITIONAL_VARIANTS[variant])
        return run_train(
            TrainSettings(task=task, epochs=epochs, out=str(run_dir), preset=preset, space=items, seed=seed)
        )

    return _run_rows(
        "positional",
        task,
        out,
        seeds,
        names,
        lambda v: " ".join(POSITIONAL_VARIANTS[v]),
        lambda v: _space_problem(preset, POSITIONAL_VARIANTS[v]),
        run,
    )


def ablate_plugin(
    task: str, out: Path, epochs: int, seeds: Sequence[int] = (0,), variants: Sequence[str] | None = None
) -> list[Row]:
    """Table 8: train each plug-in network (the task's head: classification, or the PSP head)."""

    kind = get_task(task).kind
    if PLUGIN_VARIANTS["mobilenetv2"].model_for(kind) is None:
        raise AblationError(
            f"task {task!r} is {kind}; the plug-in networks have a classification or a segmentation (PSP) "
            "head: use a classification or segmentation task (e.g. digits_cls, digits_seg)"
        )
    names = _select("plugin", variants)

    def run(variant: str, seed: int, run_dir: Path) -> SearchResult:
        model = PLUGIN_VARIANTS[variant].model_for(kind)
        return run_train(TrainSettings(task=task, epochs=epochs, out=str(run_dir), model=model, seed=seed))

    return _run_rows(
        "plugin", task, out, seeds, names, lambda v: PLUGIN_VARIANTS[v].model_for(kind), lambda v: None, run
    )


def write_table(kind: str, rows: list[Row], out: Path) -> tuple[Path, Path]:
    """``OUT/table6.csv`` (7, 8) and ``OUT/report.html`` with its section; returns both paths."""
    import pandas as pd

    from analysis.ablation import ablation_section, write_ablation_report

    csv_name, title = TABLES[kind]
    table = pd.DataFrame([row.as_dict() for row in rows], columns=COLUMNS)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / csv_name
    table.to_csv(csv, index=False)
    task = next((r.result.task for r in rows if r.result is not None), None)
    smoke = any(r.result is not None and r.result.smoke for r in rows)
    note = f"Task {task}; one run folder per row under {out}." + (
        " Smoke scale (HRNAS_SMOKE)." if smoke else ""
    )
    report = write_ablation_report(
        out / REPORT_FILE, f"HR-NAS ablation: {kind}", [ablation_section(title, table, note)], [str(csv)]
    )
    return csv, report


# ---- command line ------------------------------------------------------------------------------


def add_ablate_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``hrnas ablate {space,positional,plugin}`` and their flags."""
    sub = parser.add_subparsers(dest="ablation", required=True, metavar="{space,positional,plugin}")
    for kind, help_text in (
        ("space", "Table 6: search each space variant with the same settings"),
        ("positional", "Table 7: train the preset with each positional encoding"),
        ("plugin", "Table 8: MobileNetV2 / ShuffleNetV2 with and without the transformer"),
    ):
        p = sub.add_parser(kind, help=help_text, description=help_text)
        p.add_argument("--task", required=True, help="task name (e.g. digits_seg, digits_cls)")
        p.add_argument("--out", required=True, help="folder of the run folders, the CSV and report.html")
        p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds, a row each (default 0)")
        p.add_argument(
            "--variants",
            nargs="+",
            default=None,
            help=f"rows to run (default all): {', '.join(ABLATIONS[kind])}",
        )
        if kind != "plugin":
            p.add_argument(
                "--preset", default=None, help="the HR-NAS preset the variants change (default: the task's)"
            )
        if kind == "space":
            p.add_argument("--epochs", type=int, default=None, help="search epochs (default: the task's)")
        else:
            p.add_argument("--epochs", type=int, required=True, help="training epochs of every row")
    return parser


def cmd_ablate(args: argparse.Namespace) -> int:
    """``hrnas ablate``: 0 done, 2 bad input (one line on stderr)."""

    kind, out = args.ablation, Path(args.out)
    started = time.perf_counter()
    try:
        try:
            get_task(args.task)
        except ValueError as exc:
            raise AblationError(str(exc)) from None
        if args.epochs is not None and args.epochs < 1:
            raise AblationError(f"invalid epochs={args.epochs}: expected an integer >= 1")
        with _stdout_to_stderr():
            if kind == "space":
                rows = ablate_space(args.task, out, args.seeds, args.variants, args.epochs, args.preset)
            elif kind == "positional":
                rows = ablate_positional(args.task, out, args.epochs, args.seeds, args.variants, args.preset)
            else:
                rows = ablate_plugin(args.task, out, args.epochs, args.seeds, args.variants)
    except (AblationError, SearchError, TrainError, ConfigError, FileNotFoundError) as exc:
        print(f"hrnas ablate {kind}: error: {exc}", file=sys.stderr)
        return 2
    csv, report = write_table(kind, rows, out)
    for row in rows:
        r = row.result
        text = (
            row.note if r is None else f"{r.metric_name} {r.metric:.4f}, {r.macs:,} MACs, {r.params:,} params"
        )
        print(f"{row.variant:<24} seed {row.seed}: {text}")
    print(
        f"{len(rows)} row(s) in {time.perf_counter() - started:.0f} s; table {csv}; report {report.resolve()}"
    )
    return 0
