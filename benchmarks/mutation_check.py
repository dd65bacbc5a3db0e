"""Mutation check: does the suite catch deliberate breakages of the key features?

Each mutation is a small text patch (old -> new) applied to a throw-away copy of the repository (the
working tree's tracked and untracked, not ignored, files, or ``--rev REV`` from git); only the tests
named for it run, with one thread. A mutation is *caught* when those tests fail. The copy is first
checked unmutated: all the named tests must pass there, or the table would mean nothing.

    nice -n 19 python benchmarks/mutation_check.py                 # every mutation, working tree
    python benchmarks/mutation_check.py --only flip_not_back       # one of them
    python benchmarks/mutation_check.py --rev 153b802              # the suite as it was at a commit

The real tree is never written to. A patch whose old text is not found stops the script with its name.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    """A deliberate breakage: ``old`` replaced by ``new`` (exactly once) in ``path``."""

    name: str
    what: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


SEARCH = "tests/strategy/test_search.py"
MUTATIONS = (
    Mutation(
        "resume_restarts",
        "resume looks at its checkpoint, then starts from scratch",
        "nni_hrnas/strategy/loop.py",
        "job, policy, payload = self.job, self.policy, self.job.payload",
        "job, policy, payload = self.job, self.policy, None",
        (
            f"{SEARCH}::test_resume_after_a_nan_stop_continues_where_it_stopped",
            f"{SEARCH}::test_resume_in_the_training_phase_runs_only_the_epochs_left",
            f"{SEARCH}::test_sigkill_and_resume_continues_where_it_was_killed",
        ),
    ),
    Mutation(
        "export_raw_weights",
        "the searched network is exported with the raw instead of the EMA weights",
        "nni_hrnas/strategy/loop.py",
        "weights = {k: v.detach().cpu().clone() for k, v in self.ema.model.state_dict().items()}",
        "weights = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}",
        (
            f"{SEARCH}::test_the_exported_network_is_the_ema_with_recalibrated_bn_statistics",
            "tests/strategy/test_search_cli.py::test_search_json_run_folder_export_and_reload",
        ),
    ),
    Mutation(
        "penalty_unweighted",
        "the penalty is the plain L1 of the gammas, without the units' costs",
        "nni_hrnas/strategy/units.py",
        "terms = [g.bn.weight.abs().sum() * (g.unit_cost() / normaliser) for g in groups]",
        "terms = [g.bn.weight.abs().sum() * 1.0 for g in groups]",
        (
            "tests/strategy/test_prune.py::test_units_costs_and_penalty",
            "tests/strategy/test_prune.py::test_penalty_weighs_each_gamma_by_the_macs_its_unit_costs",
        ),
    ),
    Mutation(
        "prune_skips_bn_recalibration",
        "a prune step evaluates and exports without recalibrating BN statistics",
        "nni_hrnas/strategy/loop.py",
        "        self._recalibrate(ema.model, inputs)\n        self._evaluate_ema()\n",
        "        self._evaluate_ema()\n",
        (
            f"{SEARCH}::test_the_exported_network_is_the_ema_with_recalibrated_bn_statistics",
            "tests/strategy/test_prune.py::test_recalibrate_bn_recomputes_statistics",
        ),
    ),
    Mutation(
        "lambda_warmup_ignored",
        "lambda starts at its full value instead of ramping up over warmup_epochs",
        "nni_hrnas/strategy/policy.py",
        "ramp = 1.0 if self.warmup_epochs <= 0 else min(1.0, t / self.warmup_epochs)",
        "ramp = 1.0",
        ("tests/strategy/test_prune.py::test_lambda_ramps_up_over_the_warmup_then_stays",),
    ),
    Mutation(
        "flip_not_back",
        "the keypoint flip test averages the flipped heatmaps without flipping them back",
        "nni_hrnas/tasks/keypoints.py",
        "flipped = flip_back(self._heatmaps(x.flip(-1)), self.flip_pairs)",
        "flipped = self._heatmaps(x.flip(-1))",
        (
            "tests/tasks/test_tasks_modules.py::test_flip_back_swaps_pairs",
            "tests/tasks/test_tasks_modules.py::test_flip_test_of_a_mirror_symmetric_network_is_its_plain_output",
            "tests/tasks/test_tasks_modules.py::test_flip_test_of_an_asymmetric_network_by_hand",
        ),
    ),
    Mutation(
        "flip_pairs_not_swapped",
        "the keypoint flip test flips back without swapping left and right joints",
        "nni_hrnas/tasks/keypoints.py",
        "flipped = flip_back(self._heatmaps(x.flip(-1)), self.flip_pairs)",
        "flipped = self._heatmaps(x.flip(-1)).flip(-1)",
        (
            "tests/tasks/test_tasks_modules.py::test_flip_back_swaps_pairs",
            "tests/tasks/test_tasks_modules.py::test_flip_test_of_a_mirror_symmetric_network_is_its_plain_output",
            "tests/tasks/test_tasks_modules.py::test_flip_test_of_an_asymmetric_network_by_hand",
        ),
    ),
)


def copy_tree(dest: Path, rev: str | None) -> None:
    """The repository's files (not .git, not ignored files) at ``rev`` or as in the working tree."""
    if rev is not None:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
        return
    listed = (
        subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "-z", "-co", "--exclude-standard"],
            check=True,
            capture_output=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, listed):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def apply(root: Path, m: Mutation) -> None:
    path = root / m.path
    text = path.read_text()
    count = text.count(m.old)
    if count != 1:
        raise SystemExit(
            f"mutation {m.name}: its old text occurs {count} times in {m.path} (expected once); "
            "update the mutation to the code"
        )
    path.write_text(text.replace(m.old, m.new))


def test_exists(root: Path, test: str) -> bool:
    """Whether the revision in ``root`` has the test ``path::name`` (read from the file, not collected)."""
    path, _, name = test.partition("::")
    file = root / path
    return file.is_file() and f"def {name.split('[')[0]}(" in file.read_text()


def run_tests(root: Path, tests: list[str], timeout: float) -> tuple[str, float, str]:
    """('pass' | 'fail' | 'missing' | 'timeout', seconds, last lines) of pytest on ``tests`` in ``root``."""
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        PYTHONPATH=str(root),
        HRNAS_QUIET="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.pop("HRNAS_SMOKE", None)
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - started, ""
    seconds = time.perf_counter() - started
    tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-6:])
    if done.returncode == 0:
        return "pass", seconds, tail
    if "ERROR: not found" in done.stdout + done.stderr or done.returncode == 4:
        return "missing", seconds, tail
    return "fail", seconds, tail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", help="check the suite of this git revision instead of the working tree")
    parser.add_argument("--only", nargs="*", default=None, help="names of the mutations to run")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per pytest run")
    parser.add_argument("--skip-baseline", action="store_true", help="do not check the unmutated copy first")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if args.only is None or m.name in args.only]
    unknown = set(args.only or ()) - {m.name for m in MUTATIONS}
    if unknown:
        parser.error(f"unknown mutations {sorted(unknown)}; choose from {[m.name for m in MUTATIONS]}")
    with tempfile.TemporaryDirectory(prefix="hrnas-mutation-") as tmp:
        base = Path(tmp) / "base"
        base.mkdir()
        copy_tree(base, args.rev)
        missing = {t for t in {t for m in chosen for t in m.tests} if not test_exists(base, t)}
        if not args.skip_baseline:
            tests = sorted({t for m in chosen for t in m.tests} - missing)
            status, seconds, tail = run_tests(base, tests, args.timeout)
            print(
                f"unmutated: {status} in {seconds:.1f}s ({len(tests)} tests; not in this revision: "
                f"{sorted(missing) or 'none'})",
                flush=True,
            )
            if status != "pass":
                print(tail)
                raise SystemExit(
                    "the named tests fail without any mutation: fix them before reading the table"
                )
        rows = []
        for m in chosen:
            work = Path(tmp) / m.name
            shutil.copytree(base, work)
            apply(work, m)
            present = [t for t in m.tests if t not in missing]
            if not present:
                status, seconds, tail = "missing", 0.0, ""
            else:
                status, seconds, tail = run_tests(work, present, args.timeout)
            verdict = {
                "fail": "caught",
                "pass": "NOT caught",
                "missing": "NOT caught (no such test)",
                "timeout": "unknown (timed out)",
            }[status]
            rows.append((m, verdict, seconds, len(present)))
            print(f"{m.name:30s} {verdict:26s} {seconds:6.1f}s  ({len(present)} tests)", flush=True)
            if status == "fail":
                print("    " + tail.replace("\n", "\n    "), flush=True)
            shutil.rmtree(work)
    print("\n| mutation | breakage | verdict | tests run | seconds |\n|---|---|---|---|---|")
    for m, verdict, seconds, n in rows:
        print(f"| {m.name} | {m.what} | {verdict} | {n} | {seconds:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
