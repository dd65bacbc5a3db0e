"""benchmarks/bench_baselines.py: a variant of the search given as KEY=VALUE, checked as hrnas search checks it."""

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
