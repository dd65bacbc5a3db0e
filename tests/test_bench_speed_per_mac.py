"""benchmarks/bench_speed_per_mac.py: the searched and uniform networks of bench_baselines rows, timed in pairs."""

import json
from pathlib import Path

import pytest
from bench_scripts import load_benchmark

ROWS = (
    Path(__file__).parents[1] / "benchmarks/results/bench_baselines_digits_seg_kernels3_no_transformer.jsonl"
)


def _rows(seeds=(0,)) -> list[dict]:
    rows = [json.loads(line) for line in ROWS.read_text().splitlines()]
    return [r for r in rows if r["seed"] in seeds]


def test_each_seed_times_its_searched_architecture_against_its_uniform_network():
    bench = load_benchmark("bench_speed_per_mac")
    rows = _rows()
    (row,) = bench.measure(rows, rounds=1, steps=1)
    searched = next(r for r in rows if r["kind"] == "hrnas_retrained")
    uniform = next(r for r in rows if r["kind"] == "uniform" and r["budget"] == "epochs")
    # the networks rebuilt from the rows' architectures are the ones bench_baselines trained
    assert (row["hrnas_params"], row["uniform_params"]) == (searched["params"], uniform["params"])
    for what in ("train", "batch1", "batch32"):
        figures = row[what]
        assert figures["hrnas_ms_per_mmac"] > 0 and figures["uniform_ms_per_mmac"] > 0
        # above 1: the searched network is the slower one per MAC
        assert figures["ratio"] == pytest.approx(
            figures["hrnas_ms_per_mmac"] / figures["uniform_ms_per_mmac"]
        )


def test_a_row_whose_architecture_does_not_have_its_macs_is_refused():
    bench = load_benchmark("bench_speed_per_mac")
    rows = _rows()
    for r in rows:
        if r["kind"] == "uniform":
            r["macs"] += 1000
    with pytest.raises(SystemExit, match="MACs differ"):
        bench.measure(rows, rounds=1, steps=1)


def test_a_file_without_pairs_is_a_one_line_error(tmp_path, capsys):
    bench = load_benchmark("bench_speed_per_mac")
    only_searches = tmp_path / "rows.jsonl"
    only_searches.write_text("".join(json.dumps(r) + "\n" for r in _rows() if r["kind"] == "hrnas"))
    broken = tmp_path / "broken.jsonl"
    broken.write_text("{not json\n")
    for path, message in (
        (only_searches, "holds no hrnas_retrained and uniform rows"),
        (broken, "cannot read"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            bench.main([str(path)])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
