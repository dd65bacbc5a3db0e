import json
import sqlite3

import pandas as pd
import pytest
from analysis_fixtures import (
    copy_nni,
    make_optuna,
    write_compare,
    write_not_nni,
    write_old_nni,
    write_run,
    write_sweep,
)

from analysis.collect import COLUMNS, collect, trajectories


def messages(coll, level=None):
    return " | ".join(p.message for p in coll.problems if level is None or p.level == level)


def test_run_folder(tmp_path):
    res = write_run(tmp_path / "run", lam=0.3, eps=2e-3, seed=4)
    coll = collect([tmp_path / "run"])
    assert not coll.problems
    df = coll.table
    assert list(df.columns) == COLUMNS and len(df) == 1
    row = df.iloc[0]
    assert row["kind"] == "run" and row["strategy"] == "hrnas" and row["task"] == "digits_seg"
    assert row["macs"] == res["macs"] and row["params"] == res["params"] and row["metric"] == res["metric"]
    assert row["lambda"] == 0.3 and row["eps"] == 2e-3 and row["seed"] == 4
    assert row["arch"] == res["arch"] and row["arch_max"] == res["arch_max"]
    assert row["cost_mac_epochs"] == 30 * res["macs"] and row["cost_images_seen"] == 30 * 1797
    assert len(row["trajectory"]) == 5
    assert str(df["macs"].dtype) == "Int64"


def test_run_folder_missing_optional_keys(tmp_path):
    write_run(
        tmp_path / "r",
        drop=(
            "search_cost",
            "trajectory",
            "arch_max",
            "lambda",
            "eps",
            "seed",
            "arch",
            "strategy",
            "metric_name",
            "preset",
        ),
    )
    coll = collect([tmp_path])
    assert not coll.errors
    row = coll.table.iloc[0]
    assert row["strategy"] == "hrnas" and isinstance(row["arch"], dict)  # arch taken from arch.json
    assert row["trajectory"] is None and row["arch_max"] is None and pd.isna(row["lambda"])


def test_broken_result_json(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "result.json").write_text("{not json")
    write_run(tmp_path / "good")
    coll = collect([tmp_path])
    assert len(coll.table) == 1
    assert "result.json cannot be read" in messages(coll, "error")


def test_compare_folder_merges_run_folders(tmp_path):
    rows = write_compare(tmp_path / "cmp")
    coll = collect([tmp_path / "cmp"])
    assert not coll.problems, messages(coll)
    df = coll.table.set_index("strategy")
    assert sorted(df.index) == ["darts", "hrnas", "random"]
    assert (df["kind"] == "compare").all()
    assert df.loc["darts", "budget_used"] == pytest.approx(rows[2]["budget_used"])
    assert df.loc["hrnas", "trajectory"] is not None  # came from the run folder
    assert isinstance(df.loc["random", "arch"], dict)


def test_compare_csv_without_run_folders(tmp_path):
    rows = write_compare(tmp_path / "cmp")
    for r in rows:
        import shutil

        shutil.rmtree(tmp_path / "cmp" / r["strategy"])
    coll = collect([tmp_path / "cmp" / "results.csv"])
    df = coll.table
    assert len(df) == 3 and not coll.problems
    assert df["arch"].map(lambda a: isinstance(a, dict)).all()  # JSON strings decoded


def test_nni_finished_experiment(tmp_path):
    exp = copy_nni(tmp_path)
    coll = collect([exp])
    assert not coll.problems, messages(coll)
    df = coll.table
    assert len(df) == 6 and (df["kind"] == "nni").all() and (df["experiment"] == "fixexp01").all()
    assert df["lambda"].between(0, 1).all() and df["eps"].between(1e-4, 1e-2).all()
    assert df["macs"].notna().all() and df["params"].notna().all() and df["metric"].between(0.5, 1).all()
    assert df["arch"].map(lambda a: a["p0_b0_n0_k3"] == 48).all()
    assert (df["search_seconds"] == 1.5).all()
    # the intermediate dicts carry MACs: read as a trajectory
    assert len(df.iloc[0]["trajectory"]) == 2
    # the NNI root (several experiments) and the sqlite file itself work too
    copy_nni(tmp_path, "fixstop02")
    assert len(collect([tmp_path]).table) == 9
    # NNI links `_latest` to the newest experiment: that experiment is still read once
    (tmp_path / "_latest").symlink_to(tmp_path / "fixstop02", target_is_directory=True)
    assert sorted(collect([tmp_path]).table["experiment"].value_counts()) == [3, 6]
    assert len(collect([exp / "db" / "nni.sqlite"]).table) == 6


def test_nni_stopped_experiment_with_failed_trial(tmp_path):
    exp = copy_nni(tmp_path, "fixstop02")
    coll = collect([exp])
    df = coll.table
    assert len(df) == 3  # one SUCCEEDED, two that reported before the stop; the FAILED one is left out
    assert "1 failed" in messages(coll, "warning")
    assert not coll.errors


def test_nni_running_experiment(tmp_path):
    exp = copy_nni(tmp_path, "running/fixrun03")
    coll = collect([exp])
    assert len(coll.table) == 1
    assert "no end time recorded" in messages(coll, "warning")
    assert "2 running" in messages(coll, "warning")


def test_nni_database_stays_untouched(tmp_path):
    exp = copy_nni(tmp_path)
    db = exp / "db" / "nni.sqlite"
    before = db.read_bytes()
    collect([exp])
    assert db.read_bytes() == before


def test_nni_other_versions(tmp_path):
    old = write_old_nni(tmp_path)
    coll = collect([old])
    assert len(coll.table) == 1 and coll.table.iloc[0]["lambda"] == 0.3
    assert coll.table.iloc[0]["task"] is None or isinstance(coll.table.iloc[0]["task"], str)
    assert "older than 3.0" in messages(coll, "warning")
    bad = write_not_nni(tmp_path)
    coll = collect([bad])
    assert coll.table.empty and "not an NNI 3.0 experiment database" in messages(coll, "error")
    (tmp_path / "garbage" / "db").mkdir(parents=True)
    (tmp_path / "garbage" / "db" / "nni.sqlite").write_bytes(b"this is not sqlite at all" * 10)
    coll = collect([tmp_path / "garbage"])
    assert coll.table.empty and coll.errors


def test_optuna_two_objectives_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.sqlite3'}"
    make_optuna(url, n=8, fail=2)
    coll = collect([url])
    df = coll.table
    assert len(df) == 8 and (df["kind"] == "optuna").all()
    assert df["metric_name"].eq("mIoU").all() and df["lambda"].notna().all() and df["eps"].notna().all()
    assert df["arch"].map(lambda a: isinstance(a, dict)).all()
    assert "2 unfinished or failed" in messages(coll, "warning")
    assert "hrnas-study" in coll.studies
    # the same storage found as a file, and inside a folder
    assert len(collect([tmp_path / "study.sqlite3"]).table) == 8
    assert len(collect([tmp_path]).table) == 8


def test_optuna_single_objective_and_journal(tmp_path):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(tmp_path / "journal.log")))
    make_optuna(storage, mode="single", n=5, fail=0)
    coll = collect([tmp_path / "journal.log"])
    assert not coll.problems, messages(coll)
    assert len(coll.table) == 5 and coll.table["macs"].notna().all()


def test_optuna_bad_studies(tmp_path):
    url = f"sqlite:///{tmp_path / 'many.sqlite3'}"
    make_optuna(url, name="good", n=4)
    make_optuna(url, name="wrong", mode="wrong", n=3)
    make_optuna(url, name="empty", mode="empty")
    coll = collect([url, f"sqlite:///{tmp_path / 'missing.sqlite3'}"])
    assert len(coll.table) == 4 and set(coll.table["experiment"]) == {"good"}
    err = messages(coll, "error")
    assert "objectives are (minimise, minimise), not (metric maximise, MACs minimise)" in err
    assert "no finished trials (1 fail, 1 running)" in err
    assert "does not exist" in err
    assert not (tmp_path / "missing.sqlite3").exists()  # Optuna was not allowed to create it


def test_empty_and_missing_sources(tmp_path):
    (tmp_path / "empty").mkdir()
    coll = collect([tmp_path / "empty", tmp_path / "nope"])
    assert coll.table.empty and list(coll.table.columns) == COLUMNS
    err = messages(coll, "error")
    assert "no results found" in err and "does not exist" in err


def test_mixed_sources_and_trajectories(tmp_path):
    write_sweep(tmp_path / "sweep", n=3)
    write_compare(tmp_path / "cmp")
    copy_nni(tmp_path / "nni")
    url = f"sqlite:///{tmp_path / 'o.sqlite3'}"
    make_optuna(url, n=3, fail=0)
    coll = collect([tmp_path / "sweep", tmp_path / "cmp", tmp_path / "nni", url])
    assert not coll.errors, messages(coll)
    assert sorted(coll.table["kind"].unique()) == ["compare", "nni", "optuna", "run"]
    assert len(coll.table) == 3 + 3 + 6 + 3
    traj = trajectories(coll.table)
    assert {"label", "step", "macs", "metric"} <= set(traj.columns)
    assert traj["macs"].notna().all() and len(traj) == 3 * 5 + 5 + 6 * 2


def test_compare_rows_take_the_task_of_their_runs(tmp_path):
    import csv

    write_compare(tmp_path / "cmp", strategies=("hrnas",))
    with open(tmp_path / "cmp" / "results.csv", "a", newline="") as fh:
        csv.writer(fh).writerow(["ofa", 0.5, 123456789, 1000, 1.0, "{}"])
    coll = collect([tmp_path / "cmp"])
    df = coll.table.set_index("strategy")
    assert df.loc["ofa", "task"] == "digits_seg" and df.loc["ofa", "metric_name"] == "mIoU"
    assert df.loc["ofa", "arch"] is None and df.loc["ofa", "macs"] == 123456789


def test_nni_nas_style_results_without_macs(tmp_path):
    exp = copy_nni(tmp_path)
    conn = sqlite3.connect(exp / "db" / "nni.sqlite")
    conn.execute("update MetricData set data = ? where type = 'FINAL'", (json.dumps(json.dumps(0.7)),))
    conn.commit()
    conn.close()
    coll = collect([exp])
    assert len(coll.table) == 6 and coll.table["macs"].isna().all() and (coll.table["metric"] == 0.7).all()
    warn = [p for p in coll.problems if "no 'macs'" in p.message]
    assert len(warn) == 1 and "6 trial(s)" in warn[0].message


def test_nni_bad_metric_json(tmp_path):
    exp = copy_nni(tmp_path)
    conn = sqlite3.connect(exp / "db" / "nni.sqlite")
    conn.execute("update MetricData set data = '{broken' where type = 'FINAL' and trialJobId = 'ZpROA'")
    conn.commit()
    conn.close()
    coll = collect([exp])
    assert len(coll.table) == 5
    assert "not JSON" in messages(coll, "warning")
    json.dumps([str(p) for p in coll.problems])
