import json
import os
import re
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
from analysis_browser import ensure_chromium, inspect_page
from analysis_fixtures import copy_nni, make_optuna, write_compare, write_demo, write_not_nni, write_sweep

from analysis.cli import report_main
from analysis.report import write_report


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    write_sweep(root / "sweep", n=6)
    write_sweep(root / "sweep_random", n=4, strategy="random", seed=1)
    write_sweep(root / "ade", n=3, task="seg_ade20k", seed=2)
    write_compare(root / "cmp")
    copy_nni(root / "nni")
    copy_nni(root / "nni", "fixstop02")
    make_optuna(f"sqlite:///{root / 'study.sqlite3'}", n=10)
    return root


@pytest.fixture(scope="module")
def bad_results(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    (root / "empty").mkdir()
    copy_nni(root / "nni", "running/fixrun03")
    write_not_nni(root / "other")
    make_optuna(f"sqlite:///{root / 'wrong.sqlite3'}", name="wrong", mode="wrong", n=3)
    make_optuna(f"sqlite:///{root / 'unfinished.sqlite3'}", name="unfinished", mode="empty")
    return root


def _sources(root):
    return [
        str(root / "sweep"),
        str(root / "sweep_random"),
        str(root / "cmp"),
        str(root / "ade"),
        str(root / "nni"),
        f"sqlite:///{root / 'study.sqlite3'}",
    ]


def test_report_files(results, tmp_path):
    rep = write_report(_sources(results), tmp_path / "r" / "report.html", reference_points=True)
    text = rep.html.read_text()
    assert rep.rows == 6 + 4 + 3 + 3 + 9 + 10
    # self-contained: plotly.js inline, no external scripts or stylesheets
    assert "plotly.js v" in text[:20000] or "plotly.js" in text
    assert not re.search(r"<script[^>]+src=", text) and not re.search(r"<link[^>]+href=['\"]?http", text)
    assert text.count("class='hrnas-figure'") == len(rep.figures) >= 10
    assert "Pareto fronts" in text and "Hypervolume per strategy" in text and "Results" in text
    for section in ("Pareto fronts", "Hypervolume", "Architectures", "Search trajectories"):
        assert text.count(f"<h2>{section}</h2>") == 1, section  # tasks grouped inside one section
    assert "1 failed" in text  # the stopped NNI experiment's failed trial is reported, not hidden
    assert "reported (papers)" in text and "HR-NAS-B (paper)" in text  # the literature layer on ADE20K
    # the tables: CSV and Parquet round-trip with the architecture as JSON
    csv = pd.read_csv(rep.csv)
    assert len(csv) == rep.rows and {"metric", "macs", "params", "arch", "on_front", "lambda"} <= set(
        csv.columns
    )
    arch = json.loads(csv.loc[csv["kind"] == "run", "arch"].iloc[0])
    assert isinstance(arch, dict) and "p0_b0_n0_k3" in arch
    pq = pd.read_parquet(rep.parquet)
    assert len(pq) == rep.rows and pq["macs"].notna().sum() == csv["macs"].notna().sum()


def test_report_bad_inputs_never_fail_whole(bad_results, tmp_path):
    sources = [str(bad_results / n) for n in ("empty", "nni", "other", "missing")] + [
        f"sqlite:///{bad_results / 'wrong.sqlite3'}",
        str(bad_results / "unfinished.sqlite3"),
    ]
    rep = write_report(sources, tmp_path / "bad.html")
    text = rep.html.read_text()
    assert rep.rows == 1  # the running experiment's one finished trial
    assert "Could not include" in text
    for expected in (
        "no results found",
        "does not exist",
        "not an NNI 3.0 experiment database",
        "no end time recorded",
        "not (metric maximise, MACs minimise)",
        "no finished trials",
    ):
        assert expected in text, expected


def test_report_cli(results, tmp_path, capsys):
    out = tmp_path / "cli.html"
    assert (
        report_main(
            [
                str(results / "sweep"),
                "-o",
                str(out),
                "--no-table-files",
                "--ref-metric",
                "0.5",
                "--ref-macs",
                "2e9",
                "--arch",
                "0,5",
                "--title",
                "My sweep",
            ]
        )
        == 0
    )
    text = out.read_text()
    assert "My sweep" in text and "given on the command line" in text
    assert not out.with_suffix(".csv").exists()
    err = capsys.readouterr().err
    assert "wrote" in err
    # nothing readable: the report is still written and says so; exit status 1
    empty = tmp_path / "empty"
    empty.mkdir()
    assert report_main([str(empty), "-o", str(tmp_path / "none.html")]) == 1
    assert "no results could be included" in (tmp_path / "none.html").read_text()
    with pytest.raises(SystemExit) as exc:
        report_main(["--help"])
    assert exc.value.code == 0
    assert "RESULTS" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        report_main([str(empty), "--ref-metric", "0.5"])
    assert exc.value.code == 2


@pytest.fixture(scope="module")
def chromium():
    path, why = ensure_chromium()
    if path is None:
        pytest.skip(f"headless Chromium unavailable: {why}")
    return path


def _keep_screenshot(shot: Path) -> Path:
    """Screenshots also go to $HRNAS_ARTIFACTS when set (CI keeps them)."""
    dest = os.environ.get("HRNAS_ARTIFACTS")
    if dest:
        Path(dest).mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy(shot, Path(dest) / shot.name))
    return shot


def test_report_renders_in_chromium(results, bad_results, tmp_path, chromium):
    t0 = time.monotonic()
    rep = write_report(
        _sources(results) + [str(bad_results / "other")], tmp_path / "report.html", reference_points=True
    )
    page = inspect_page(chromium, rep.html, tmp_path / "hrnas-report.png")
    assert page["errors"] == [], page["errors"]
    assert all(u.startswith(("file:", "data:", "blob:", "about:")) for u in page["requests"]), page[
        "requests"
    ]
    figs = page["figures"]
    assert [f["title"] for f in figs] == rep.figures and page["plotly_divs"] == len(rep.figures)
    for f in figs:
        assert f["rendered"] and f["svgs"] >= 1 and f["traces"] >= 1, f
        assert f["points"] + f["lines"] > 0, f  # plot elements were drawn
        assert f["width"] > 300 and f["height"] > 200, f
    shot = page["screenshot"]
    assert shot.exists() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    print(f"screenshot: {_keep_screenshot(shot)} ({time.monotonic() - t0:.1f} s)")


def test_bad_input_report_renders_in_chromium(bad_results, tmp_path, chromium):
    rep = write_report(
        [str(bad_results / n) for n in ("empty", "nni", "other")], tmp_path / "bad-report.html"
    )
    page = inspect_page(chromium, rep.html, tmp_path / "hrnas-bad-report.png")
    assert page["errors"] == []
    assert all(f["rendered"] for f in page["figures"]) and len(page["figures"]) == len(rep.figures) >= 1
    _keep_screenshot(page["screenshot"])


def test_demo_report_renders_in_chromium(tmp_path, chromium):
    run = tmp_path / "demo"
    write_demo(run)
    rep = write_report([run, run / "baselines"], tmp_path / "demo.html")
    page = inspect_page(chromium, rep.html, tmp_path / "hrnas-demo-report.png")
    assert page["errors"] == [] and [f["title"] for f in page["figures"]] == rep.figures
    pareto = page["figures"][0]
    assert pareto["rendered"] and pareto["traces"] == 4 and pareto["points"] >= 5, pareto
    _keep_screenshot(page["screenshot"])
