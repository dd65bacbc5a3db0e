"""``unit_cost=exact|paper``: what a depthwise channel's penalty weight counts (Eq. 6), checked by hand
and in the weights a running search's penalty uses."""

from __future__ import annotations

import pytest
import torch
from search_helpers import tiny_search

from nni_hrnas.search import SearchError, SearchSettings
from nni_hrnas.strategy import ProgressiveShrinking
from nni_hrnas.strategy import loop as search_loop
from search_spaces import HRNASSpace, costs
from search_spaces.hrnas import plan_blocks
from search_spaces.ops import SearchingBlock

SIZE = (3, 32, 32)


def test_unit_costs_of_a_reduction_block_by_hand():
    # 6 -> 10 channels, stride 2, input 11 x 13: the depthwise convs output 6 x 7 = 42 pixels
    block = SearchingBlock(6, 10, stride=2, kernel_widths={3: 4, 5: 2, 7: 3}, num_tokens=2)
    paper = costs.block_unit_macs(block, (11, 13), "paper")
    exact = costs.block_unit_macs(block, (11, 13), "exact")
    # Eq. 6 as printed: k * k * h * w, the depthwise conv alone
    assert {k: paper[k] for k in ("k3", "k5", "k7")} == {"k3": 9 * 42, "k5": 25 * 42, "k7": 49 * 42}
    # exact: + the channel's expand row (6 MACs per input pixel) and project column (10 per output pixel)
    assert {k: exact[k] for k in ("k3", "k5", "k7")} == {
        "k3": 6 * 143 + 9 * 42 + 10 * 42,
        "k5": 6 * 143 + 25 * 42 + 10 * 42,
        "k7": 6 * 143 + 49 * 42 + 10 * 42,
    }
    assert paper["tok"] == exact["tok"] > 0  # a token is O_T(n') - O_T(n'-1) either way


def _penalty_weights(monkeypatch, **strategy_kwargs) -> tuple[dict[str, float], ProgressiveShrinking]:
    """The unit cost of every group the search's penalty weighed at its first step."""
    seen: dict[str, float] = {}
    real = search_loop.penalty

    def spy(groups, normaliser):
        if not seen:
            seen.update({g.label: float(g.unit_cost()) for g in groups})
        return real(groups, normaliser)

    monkeypatch.setattr(search_loop, "penalty", spy)
    strategy = tiny_search(
        evaluator_kwargs=dict(n_train=16, n_val=16), lambda_=0.05, epochs=1, **strategy_kwargs
    )
    return seen, strategy


def test_the_setting_reaches_the_penalty_of_a_running_search(monkeypatch):
    config = HRNASSpace.from_preset("tiny").config
    out_area = {}
    for slot in plan_blocks(config):  # each block's depthwise output size, from the image size down
        side = -(-(SIZE[1] // slot.input_stride) // slot.stride)
        out_area[slot.label] = side * side
    paper, strategy = _penalty_weights(monkeypatch, unit_cost="paper")
    kernels = {label: w for label, w in paper.items() if not label.endswith("_tok")}
    assert len(kernels) == 3 * len(out_area)
    for label, weight in kernels.items():
        block, k = label.rsplit("_k", 1)
        assert weight == int(k) ** 2 * out_area[block], label
    assert strategy.result["unit_cost"] == "paper"

    exact, strategy = _penalty_weights(monkeypatch)  # the default
    assert strategy.result["unit_cost"] == "exact"
    net = HRNASSpace.from_preset("tiny").freeze(HRNASSpace.from_preset("tiny").max_sample())
    for slot, block in net.searching_blocks():
        hw = (SIZE[1] // slot.input_stride, SIZE[2] // slot.input_stride)
        for name, path in block.paths.items():
            want = costs.kernel_unit_macs(
                block.in_channels, block.out_channels, path.kernel_size, hw, block.stride
            )
            assert exact[f"{slot.label}_{name}"] == want
    assert all(exact[label] > paper[label] for label in kernels)
    assert all(exact[label] == paper[label] for label in paper if label.endswith("_tok"))


def test_a_bad_unit_cost_is_one_clear_line():
    with pytest.raises(ValueError, match=r"^unit_cost must be exact or paper, got 'flops'$"):
        ProgressiveShrinking(unit_cost="flops")
    with pytest.raises(SearchError, match=r"^invalid unit_cost='flops': expected exact or paper$"):
        SearchSettings(task="digits_seg", unit_cost="flops")
    with pytest.raises(ValueError, match="unit_cost must be one of exact, paper"):
        costs.block_unit_macs(SearchingBlock(4, 4, kernel_widths={3: 2}), (8, 8), "flops")


def test_the_exact_cost_is_what_removing_a_channel_saves_the_paper_cost_is_not():
    block = SearchingBlock(6, 10, stride=2, kernel_widths={3: 4, 5: 2, 7: 3})
    fewer = SearchingBlock(6, 10, stride=2, kernel_widths={3: 3, 5: 2, 7: 3})
    saved = (
        costs.searching_block_cost(block, (11, 13)).macs - costs.searching_block_cost(fewer, (11, 13)).macs
    )
    assert costs.block_unit_macs(block, (11, 13), "exact")["k3"] == saved
    assert costs.block_unit_macs(block, (11, 13), "paper")["k3"] < saved


def _norm_act_elements(module: torch.nn.Module, x: torch.Tensor) -> int:
    """BN and activation output elements of one forward pass, counted by forward hooks (not the cost
    model): a BN followed by its ReLU counts its elements twice, as ``costs.norm_act`` does."""
    counted = 0

    def count(_module, _inputs, output):
        nonlocal counted
        counted += output.numel()

    hooks = [
        m.register_forward_hook(count)
        for m in module.modules()
        if isinstance(m, torch.nn.BatchNorm2d | torch.nn.ReLU)
    ]
    with torch.no_grad():
        module.eval()(x)
    for hook in hooks:
        hook.remove()
    return counted


def test_a_channels_elements_are_what_removing_it_saves_counted_in_a_forward_pass():
    x = torch.randn(1, 6, 11, 13)
    block = SearchingBlock(6, 10, stride=2, kernel_widths={3: 4, 5: 2}, num_tokens=0)
    fewer = SearchingBlock(6, 10, stride=2, kernel_widths={3: 3, 5: 2}, num_tokens=0)
    units = costs.block_unit_norm_act(block, (11, 13))
    assert units["k3"] == units["k5"] == _norm_act_elements(block, x) - _norm_act_elements(fewer, x)
    # by hand: the expand BN + ReLU at 11 x 13, the depthwise BN + ReLU at 6 x 7
    assert units["k3"] == 2 * 143 + 2 * 42


def test_the_elementwise_weight_reaches_the_penalty_of_a_running_search(monkeypatch):
    plain, _ = _penalty_weights(monkeypatch)
    monkeypatch.undo()
    weighted, strategy = _penalty_weights(monkeypatch, elementwise_weight=7.0)
    assert strategy.result["elementwise_weight"] == 7.0
    net = HRNASSpace.from_preset("tiny").freeze(HRNASSpace.from_preset("tiny").max_sample())
    for slot, block in net.searching_blocks():
        side = SIZE[1] // slot.input_stride
        out_side = -(-side // block.stride)
        for name in block.paths:  # by hand: two BN + ReLU maps, at the input and the depthwise output
            label = f"{slot.label}_{name}"
            assert weighted[label] == plain[label] + 7.0 * (2 * side * side + 2 * out_side * out_side)
        if block.transformer is not None:
            assert weighted[f"{slot.label}_tok"] > plain[f"{slot.label}_tok"]


def test_a_bad_elementwise_weight_is_one_clear_line():
    with pytest.raises(ValueError, match=r"^elementwise_weight"):
        ProgressiveShrinking(elementwise_weight=-1.0)
    with pytest.raises(SearchError, match=r"^invalid elementwise_weight=-1\.0: expected a number >= 0$"):
        SearchSettings(task="digits_seg", elementwise_weight=-1.0)
