"""What an nnictl trial runs: one whole HR-NAS search with the lambda and eps the tuner picked.

``trialCommand: python -m nni_hrnas.trial --task cityscapes`` (see experiments/*.yml); the trial
takes every ``hrnas search`` flag but ``--out`` and ``--resume``, and the tuner's parameters
(``lambda``, ``eps``, or any other search setting by its name) override them. The search
reports ``{'default': metric, 'macs': ...}`` after every evaluated epoch as an intermediate result
(what NNI's web UI plots and its assessors read) and ends with the final dict
``{'default': metric, 'macs', 'params', 'arch', 'search_seconds'}``.

The experiment's ``trialConcurrency`` trials share the machine: each runs torch on the cores
divided by it (``--threads N`` overrides).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nni

from nni_hrnas.compat import nni_trial_concurrency
from nni_hrnas.run_folder import RunFolder, SearchResult
from nni_hrnas.search import SearchError, SearchSettings, run_search, search_kwargs
from nni_hrnas.settings import add_arguments, unknown_keys
from nni_hrnas.threads import limit_threads, threads_per_worker


@contextlib.contextmanager
def outer_trial_state() -> Iterator[None]:
    """Keep the outer HPO trial's parameters across the inner NAS run.

    A NAS experiment run inside a trial can overwrite ``nni.trial._params`` (the parameter id the
    outer tuner waits for) and the intermediate-result sequence; the outer experiment then gets
    results under the wrong id and its tuner fails (KeyError: 0). With the one-shot HR-NAS
    strategy NNI 3.0 leaves them alone (tests/experiments checks the ids end to end); the guard
    keeps an inner multi-trial strategy from corrupting them. NNI 3.0 has no public API for this.
    """
    import nni.trial as trial_module

    saved = {
        name: getattr(trial_module, name)
        for name in ("_params", "_intermediate_seq")
        if hasattr(trial_module, name)
    }
    try:
        yield
    finally:
        if "_intermediate_seq" in saved:  # never reuse a sequence number the outer trial already sent
            saved["_intermediate_seq"] = max(saved["_intermediate_seq"], trial_module._intermediate_seq)
        for name, value in saved.items():
            setattr(trial_module, name, value)


def final_result(result: SearchResult) -> dict[str, Any]:
    """The dict a trial reports: NNI keeps all of it for HPO experiments and hands it to the tuner."""
    return {
        "default": float(result.metric),
        "macs": int(result.macs),
        "params": int(result.params),
        "arch": result.arch,
        "search_seconds": float(result.search_seconds),
    }


def report_epoch(epoch: dict[str, Any]) -> None:
    """The strategy's per-epoch callback: an intermediate result for each evaluated epoch."""
    if math.isfinite(epoch["metric"]):
        nni.report_intermediate_result(
            {"default": float(epoch["metric"]), "macs": int(epoch["macs"]), "epoch": int(epoch["epoch"])}
        )


#: Search settings the trial sets itself: its run folder is the trial's output folder, resumed
#: when a checkpoint is there (NNI re-ran the trial).
_TRIAL_OWNED = ("out", "resume")
#: The tuner's parameters every HR-NAS experiment searches over.
_TUNED = ("lambda", "eps")


def build_parser() -> argparse.ArgumentParser:
    """The trial's flags: every ``hrnas search`` setting (the same declarations) but the run folder, and ``--threads``."""
    parser = argparse.ArgumentParser(
        prog="python -m nni_hrnas.trial",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser, SearchSettings, exclude=_TRIAL_OWNED)
    parser.add_argument(
        "--threads",
        type=int,
        help="torch threads of this trial (default: this machine's cores "
        "divided by the experiment's trialConcurrency)",
    )
    return parser


def trial_settings(args: argparse.Namespace, params: dict[str, Any], out: Path):
    """The :class:`~nni_hrnas.search.SearchSettings` of a trial: its flags, then the tuner's parameters
    (named as the settings' public names: ``lambda``, ``eps``, ``shrink_epochs``, ...) over them."""
    missing = set(_TUNED) - set(params)
    if missing:
        raise SystemExit(
            f"the tuner gave no {sorted(missing)}: the config's searchSpace must define lambda and eps"
        )
    unknown = unknown_keys(SearchSettings, params)
    if unknown:
        raise SearchError(
            f"the tuner gave {unknown}, which name no search setting: the config's searchSpace keys "
            "must be settings of hrnas search (lambda, eps, shrink_epochs, ...)"
        )
    flags = {name: value for name, value in search_kwargs(args).items() if value is not None}
    return SearchSettings(
        **{**flags, **search_kwargs(params, public=True)},
        out=str(out),
        resume=RunFolder(out).has_checkpoint(),
    )


def main(argv: list[str] | None = None) -> int:
    """Run the trial (``python -m nni_hrnas.trial``); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        limit_threads(threads_per_worker(nni_trial_concurrency() or 1, args.threads))
    except ValueError as exc:
        parser.error(str(exc))
    params = nni.get_next_parameter() or {}
    out = Path(os.environ.get("NNI_OUTPUT_DIR", ".")) / "search"
    settings = trial_settings(args, params, out)
    with outer_trial_state():
        result = run_search(settings, on_epoch_end=report_epoch)
    nni.report_final_result(final_result(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
