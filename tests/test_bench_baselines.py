"""benchmarks/bench_baselines.py: a variant of the search given as KEY=VALUE, checked as hrnas search checks it."""

import json

import pytest
from bench_scripts import load_benchmark

from nni_hrnas.search import SearchSettings
from search_spaces import HRNASSpace


def test_search_variants_become_the_search_settings_of_their_public_names():
    overrides = load_benchmark("bench_baselines")._search_overrides(
        ["lambda=3e-4", "shrink_epochs=6", "warmup_epochs=3"]
    )
    assert overrides == {"lambda_": 3e-4, "shrink_epochs": 6, "warmup_epochs": 3.0}
    settings = SearchSettings(task="digits_kp", **overrides)
    assert (settings.lambda_, settings.shrink_epochs, settings.warmup_epochs) == (3e-4, 6, 3.0)
    assert isinstance(settings.shrink_epochs, int) and isinstance(settings.warmup_epochs, float)


def test_a_repeatable_setting_collects_its_pairs_as_hrnas_search_does():
    overrides = load_benchmark("bench_baselines")._search_overrides(
        ["space=kernels=3", "space=transformer=false"]
    )
    # the narrow space: no 5x5, 7x7, tokens
    space = HRNASSpace.from_preset("digits_seg", **overrides["space"])
    assert space.max_sample() and all(label.endswith("_k3") for label in space.max_sample())


@pytest.mark.parametrize(
    "pair, message",
    [
        ("shrink-epochs=6", "unknown setting"),
        ("lambda", "expected KEY=VALUE"),
        ("space=kernels", "invalid --space"),
    ],
)
def test_a_bad_search_variant_is_one_line_naming_it(pair, message):
    with pytest.raises(SystemExit, match=message):
        load_benchmark("bench_baselines")._search_overrides([pair])


@pytest.mark.parametrize(
    "space, trained_twice", [({}, False), ({"kernels": (3, 5, 7), "transformer": True}, True)]
)
def test_the_hand_slimmed_network_is_trained_only_where_it_differs_from_the_uniform_one(
    space, trained_twice, tmp_path, monkeypatch
):
    """digits_seg's default space has one 3x3 path a block and no transformers, so the hand-slimmed
    network is the uniform one; in the paper's space (5x5 and 7x7 paths, transformers) it is not."""
    from nni_hrnas import baselines, search
    from nni_hrnas.tasks.registry import get_task

    bench = load_benchmark("bench_baselines")
    overrides = {"space": space} if space else {}
    settings = SearchSettings(task="digits_seg", out=str(tmp_path), **overrides)
    supernet, input_size = search.search_space(settings), get_task("digits_seg").input_size(False)
    macs = 0.1 * baselines.sample_macs(supernet, supernet.max_sample(), input_size)
    arch = baselines.uniform_sample(supernet, macs, input_size)
    run_dir = tmp_path / "digits_seg-seed0"
    run_dir.mkdir()
    result = dict(
        arch=arch, macs=int(macs), params=1, metric=0.5, epochs=2, run_seconds=1.0,
        search_cost={"images_seen": 10}, macs_max=1, shrink_epochs=1,
    )  # fmt: skip
    (run_dir / "result.json").write_text(json.dumps(result))
    trained = []

    def train_architecture(task, searched_space, arch, epochs, name, **kwargs):
        trained.append(name)
        return baselines.TrainedRun(name, arch, int(macs), 1, 0.4, epochs, 1.0, 0.1)

    monkeypatch.setattr(baselines, "train_architecture", train_architecture)
    monkeypatch.setattr(search, "load_searched_model", lambda run_dir: supernet.freeze(arch))
    monkeypatch.setattr(bench, "_latency_per_mmac", lambda *args: 0.0)
    rows = []
    bench._measure("digits_seg", 0, 0, "search", tmp_path, set(), rows.append, overrides, ("epochs",))
    expected = ["hrnas_retrained", "uniform"] + (["hand_slimmed"] if trained_twice else [])
    assert trained == expected
    assert [r["kind"] for r in rows] == ["hrnas"] + expected
