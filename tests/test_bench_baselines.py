"""benchmarks/bench_baselines.py: a variant of the search given as KEY=VALUE, checked as hrnas search checks it."""

import importlib.util
from pathlib import Path

import pytest

from nni_hrnas.search import SearchSettings

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_baselines.py"


def _bench_baselines():
    spec = importlib.util.spec_from_file_location("bench_baselines", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_search_variants_become_the_search_settings_of_their_public_names():
    overrides = _bench_baselines()._search_overrides(["lambda=3e-4", "shrink_epochs=6", "warmup_epochs=3"])
    assert overrides == {"lambda_": 3e-4, "shrink_epochs": 6, "warmup_epochs": 3.0}
    settings = SearchSettings(task="digits_kp", **overrides)
    assert (settings.lambda_, settings.shrink_epochs, settings.warmup_epochs) == (3e-4, 6, 3.0)
    assert isinstance(settings.shrink_epochs, int) and isinstance(settings.warmup_epochs, float)


@pytest.mark.parametrize(
    "pair, message",
    [("shrink-epochs=6", "unknown setting"), ("lambda", "expected KEY=VALUE")],
)
def test_a_bad_search_variant_is_one_line_naming_it(pair, message):
    with pytest.raises(SystemExit, match=message):
        _bench_baselines()._search_overrides([pair])
