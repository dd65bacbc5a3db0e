"""Paper Fig. 4 in the report: several tasks' searched architectures side by side, on real run folders.

``data/tasks`` holds the result.json and arch.json of smoke searches of digits_seg, digits_kp and
digits_cls (and of digits_seg in the single-branch space); see its README. Expected values are read
from those files with plain ``json`` and a regular expression, not through the analysis.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import pytest

from analysis.collect import collect
from analysis.report import COMPARISON, build_figures, compared_archs, write_report
from search_spaces import HRNASNetwork, choice_maxima, validate_sample
from search_spaces.config import HRNASConfig

DATA = Path(__file__).parent / "data" / "tasks"
TASKS = ["digits_cls", "digits_kp", "digits_seg"]  # the report's task order (sorted)
# the resolution row of a kernel-path label: p{s}_b{b}_n{i} and f{s}_o{b}_i{i} sit in branch b
BRANCH_LABEL = re.compile(r"(?:p\d+_b(\d+)_n\d+|f\d+_o(\d+)_i\d+)_k\d+")


def _read(name: str, file: str) -> dict:
    return json.loads((DATA / name / file).read_text())


def _shares_by_hand(arch: dict, arch_max: dict) -> dict[str, float]:
    kept: dict[str, int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    for label, maximum in arch_max.items():
        if label.endswith("_tok"):
            continue
        m = BRANCH_LABEL.fullmatch(label)
        row = f"branch {m[1] or m[2]}" if m else "head"
        kept[row] += arch[label]
        total[row] += maximum
    return {row: kept[row] / total[row] for row in total}


def _comparison(sources: list[Path]):
    coll = collect([str(s) for s in sources])
    figs, problems, _ = build_figures(coll)
    found = [fig for section, _, fig in figs if section == COMPARISON]
    return coll.table, found


@pytest.mark.parametrize("name", [*TASKS, "digits_seg_single"])
def test_the_run_folders_still_describe_their_space(name):
    result = _read(name, "result.json")
    config = HRNASConfig(**result["config"])
    assert result["arch_max"] == choice_maxima(config)
    arch = validate_sample(config, _read(name, "arch.json"))
    assert arch == result["arch"]
    assert HRNASNetwork(config, arch).cost(tuple(result["input_size"])).macs == result["macs"]


def test_three_tasks_side_by_side_per_block_and_per_branch():
    table, figs = _comparison([DATA / t for t in TASKS])
    assert len(figs) == 1
    fig = figs[0]
    names = [name for name, _, _ in compared_archs(table)]
    assert [n.split(" · ")[0] for n in names] == TASKS  # one architecture per task
    for tag, task in zip("ABC", TASKS, strict=True):
        arch, arch_max = _read(task, "arch.json"), _read(task, "result.json")["arch_max"]
        blocks = {label.rpartition("_")[0] for label in arch}
        for k in (3, 5, 7):  # the channels kept per block, every panel's bars together
            bars = [t for t in fig.data if t.name == f"{k}x{k} kept ({tag})"]
            drawn = {str(b): float(y) for t in bars for (b, *_), y in zip(t.customdata, t.y, strict=True)}
            assert drawn == {b: arch[f"{b}_k{k}"] for b in blocks}
        tokens = [t for t in fig.data if t.name == f"tokens kept ({tag})"]
        drawn = {str(b): float(y) for t in tokens for (b, *_), y in zip(t.customdata, t.y, strict=True)}
        assert (
            {b: v for b, v in drawn.items() if v == v}
            == {  # NaN: a block without a transformer
                label[: -len("_tok")]: v for label, v in arch.items() if label.endswith("_tok")
            }
        )
        removed = sum(sum(t.y) for t in fig.data if t.name == f"removed channels ({tag})")
        assert removed == sum(m - arch[label] for label, m in arch_max.items() if not label.endswith("_tok"))
        (share,) = [t for t in fig.data if t.name == f"share of channels kept ({tag})"]
        want = _shares_by_hand(arch, arch_max)
        got = {x.split(" (")[0]: y for x, y in zip(share.x, share.y, strict=True)}
        assert got == pytest.approx(want, rel=1e-12) and set(got) == set(want)
    # the tasks keep their computation in different places
    shares = [_shares_by_hand(_read(t, "arch.json"), _read(t, "result.json")["arch_max"]) for t in TASKS]
    assert shares[0] != shares[1] != shares[2]


def test_one_task_compares_its_runs_and_one_run_gets_no_comparison(tmp_path):
    table, figs = _comparison([DATA / "digits_seg", DATA / "digits_seg_single"])
    (fig,) = figs
    archs = compared_archs(table)
    single = _read("digits_seg_single", "result.json")
    assert archs[0][1] == single["arch"]  # most MACs first: the single-branch supernet, unpruned
    (share,) = [t for t in fig.data if t.name == "share of channels kept (A)"]
    got = {x.split(" (")[0]: y for x, y in zip(share.x, share.y, strict=True)}
    assert got == pytest.approx(_shares_by_hand(single["arch"], single["arch_max"]), rel=1e-12)
    assert _comparison([DATA / "digits_seg"])[1] == []

    rep = write_report([DATA / t for t in TASKS], tmp_path / "report.html", parquet=False)
    text = rep.html.read_text()
    assert text.count(f"<h2>{COMPARISON}</h2>") == 1 and "architectures per task" in rep.figures
