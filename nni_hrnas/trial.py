"""What an nnictl trial runs: one whole HR-NAS search with the lambda and eps the tuner picked.

``trialCommand: python -m nni_hrnas.trial --task cityscapes`` (see experiments/*.yml). The search
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

from nni_hrnas.run_folder import RunFolder, SearchResult


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

    saved = {name: getattr(trial_module, name) for name in ("_params", "_intermediate_seq")
             if hasattr(trial_module, name)}
    try:
        yield
    finally:
        if "_intermediate_seq" in saved:  # never reuse a sequence number the outer trial already sent
            saved["_intermediate_seq"] = max(saved["_intermediate_seq"], trial_module._intermediate_seq)
        for name, value in saved.items():
            setattr(trial_module, name, value)


def final_result(result: SearchResult) -> dict[str, Any]:
    """The dict a trial reports: NNI keeps all of it for HPO experiments and hands it to the tuner."""
    return {"default": float(result.metric), "macs": int(result.macs), "params": int(result.params),
            "arch": result.arch, "search_seconds": float(result.search_seconds)}


def report_epoch(epoch: dict[str, Any]) -> None:
    """The strategy's per-epoch callback: an intermediate result for each evaluated epoch."""
    if math.isfinite(epoch["metric"]):
        nni.report_intermediate_result({"default": float(epoch["metric"]), "macs": int(epoch["macs"]),
                                        "epoch": int(epoch["epoch"])})


def main(argv: list[str] | None = None) -> int:
    """Run the trial (``python -m nni_hrnas.trial``); returns the exit status."""
    from nni_hrnas.search import SearchSettings, add_device_arguments, device_kwargs, run_search

    parser = argparse.ArgumentParser(prog="python -m nni_hrnas.trial", description=__doc__)
    add_device_arguments(parser)
    parser.add_argument("--task", required=True)
    parser.add_argument("--preset")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root")
    parser.add_argument("--threads", type=int, help="torch threads of this trial (default: this machine's cores "
                                                    "divided by the experiment's trialConcurrency)")
    args = parser.parse_args(argv)
    from nni_hrnas.compat import nni_trial_concurrency
    from nni_hrnas.threads import limit_threads, threads_per_worker

    try:
        limit_threads(threads_per_worker(nni_trial_concurrency() or 1, args.threads))
    except ValueError as exc:
        parser.error(str(exc))
    params = nni.get_next_parameter() or {}
    missing = {"lambda", "eps"} - set(params)
    if missing:
        raise SystemExit(f"the tuner gave no {sorted(missing)}: the config's searchSpace must define lambda and eps")
    out = Path(os.environ.get("NNI_OUTPUT_DIR", ".")) / "search"
    settings = SearchSettings(task=args.task, preset=args.preset, lambda_=float(params["lambda"]),
                              eps=float(params["eps"]), epochs=args.epochs, seed=args.seed,
                              data_root=args.data_root, out=str(out), resume=RunFolder(out).has_checkpoint(),
                              **device_kwargs(args))
    with outer_trial_state():
        result = run_search(settings, on_epoch_end=report_epoch)
    nni.report_final_result(final_result(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
