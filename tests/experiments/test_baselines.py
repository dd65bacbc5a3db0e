"""Baselines at equal MACs: uniform slimming and random architectures of the space."""

from __future__ import annotations

import pytest
import torch
from reference import torch_counted_macs

from nni_hrnas import baselines
from search_spaces import HRNASSpace


@pytest.mark.parametrize("preset, fraction", [("digits_kp", 0.0162), ("tiny", 0.5)])
def test_uniform_sample_scales_every_width_by_one_factor_to_the_macs(preset, fraction):
    """Within 3% of the asked MACs by an independent count, every width the same fraction of its
    maximum (within one channel), also next to the space's minimum (digits_kp at 1.49 M MACs)."""
    space = HRNASSpace.from_preset(preset)
    size = space.config.input_size
    target = fraction * baselines.sample_macs(space, space.max_sample(), size)
    arch = baselines.uniform_sample(space, target, size)
    net = space.freeze(arch).eval()
    counted = torch_counted_macs(net, torch.randn(1, *size))  # grad mode on: the counter needs it
    assert abs(counted - target) <= 0.03 * target
    maxima = space.max_sample()
    ratios = [arch[label] / maximum for label, maximum in maxima.items()]
    spread = max(ratios) - min(ratios)
    assert spread <= max(1.0 / m for m in maxima.values()) + 1e-9, spread


def test_random_samples_land_on_the_macs_and_differ():
    space = HRNASSpace.from_preset("digits_seg")
    size = space.config.input_size
    target = 8.4e6
    samples = baselines.random_samples(space, target, size, count=3, seed=0)
    assert len({tuple(sorted(s.items())) for s in samples}) == 3
    for s in samples:
        assert abs(baselines.sample_macs(space, s, size) - target) <= 0.03 * target
        space.validate_sample(s)


def test_macs_outside_the_space_is_one_clear_error():
    space = HRNASSpace.from_preset("tiny")
    with pytest.raises(baselines.BaselineError, match="ask for MACs in that range"):
        baselines.uniform_sample(space, 1e12, space.config.input_size)
