"""The analytic cost model against torch's FlopCounterMode, parameter counts and hand values."""

import random

import pytest
import torch
from reference import parameter_count, torch_counted_macs

from search_spaces import PRESETS, HRNASNetwork, HRNASSpace, choice_maxima, costs, get_preset

PAPER_PRESETS = ["cityscapes", "ade20k", "coco_keypoints", "imagenet"]


def _meta_network(config, sample):
    with torch.device("meta"):  # shapes only: the full-size supernets are not allocated
        return HRNASNetwork(config, sample).eval()


def _check(config, sample, input_size=None):
    net = _meta_network(config, sample)
    size = input_size or config.input_size
    predicted = net.cost(size)
    with torch.device("meta"):
        counted = torch_counted_macs(net, torch.empty(1, *size))
    assert abs(predicted.macs - counted) <= 0.01 * counted, (predicted.macs, counted)
    assert predicted.params == parameter_count(net)
    return predicted.macs, counted


@pytest.mark.parametrize("transformer", [True, False])
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_supernet_cost_at_paper_input_size(name, transformer):
    config = get_preset(name, transformer=transformer)
    predicted, counted = _check(config, choice_maxima(config))
    assert predicted == counted  # exact, not only within 1%


# Table 6's single-branch variant (its own blocks, transitions and head inputs) of one preset per
# head kind: dense (the paper's supernet), classification, detection with the pillar front end.
@pytest.mark.parametrize("name", ["cityscapes", "digits_cls", "kitti_sim"])
def test_single_branch_supernet_cost_at_paper_input_size(name):
    config = get_preset(name, layout="single_branch")
    predicted, counted = _check(config, choice_maxima(config))
    assert predicted == counted


@pytest.mark.parametrize("name", ["digits_seg", "digits_cls"])
def test_single_branch_random_samples_cost(name):
    space = HRNASSpace.from_preset(name, layout="single_branch")
    size = SMALL_INPUTS.get(name, space.config.input_size)
    rng = random.Random(name)
    for _ in range(2):
        sample = {label: rng.choice(values) for label, values in space.choices().items()}
        net = _meta_network(space.config, sample).to_empty(device="cpu")
        for tensor in net.state_dict().values():
            tensor.zero_()
        predicted = net.cost(size)
        assert predicted.macs == torch_counted_macs(net, torch.zeros(1, *size))
        assert predicted.params == parameter_count(net)


# Random samples run on real CPU tensors at a small input of the preset's aspect ratio: faster than
# the meta device, whose shape functions run as Python decompositions (digits_seg, one architecture:
# 1.9 s counted on meta, 0.8 s on CPU at this size);
# the paper-size runs above and test_other_input_sizes check how costs scale with the input.
SMALL_INPUTS = {
    "cityscapes": (3, 64, 128),
    "ade20k": (3, 64, 64),
    "coco_keypoints": (3, 128, 96),
    "imagenet": (3, 64, 64),
    "kitti": (64, 128, 112),
}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_random_samples_cost(name):
    space = HRNASSpace.from_preset(name)
    size = SMALL_INPUTS.get(name, space.config.input_size)
    rng = random.Random(sorted(PRESETS).index(name))
    for _ in range(4):  # 40 architectures over the 10 presets; each is a whole CPU forward under the counter
        sample = {label: rng.choice(values) for label, values in space.choices().items()}
        net = _meta_network(space.config, sample).to_empty(device="cpu")
        for tensor in net.state_dict().values():
            tensor.zero_()  # values do not matter for counting; keep them finite
        predicted = net.cost(size)
        counted = torch_counted_macs(net, torch.zeros(1, *size))
        assert abs(predicted.macs - counted) <= 0.01 * counted and predicted.macs == counted
        assert predicted.params == parameter_count(net)


def test_real_cpu_forward_with_flash_attention_counted():
    # On CPU torch dispatches its fused attention kernel; the reference counts it explicitly.
    space = HRNASSpace.from_preset("digits_seg")
    net = space.freeze(space.max_sample()).eval()
    x = torch.randn(1, *space.config.input_size)
    assert net.cost().macs == torch_counted_macs(net, x)


def test_other_input_sizes():
    config = get_preset("cityscapes")
    _check(config, choice_maxima(config), (3, 1024, 2048))
    _check(config, choice_maxima(config), (3, 256, 512))


def test_kernel_unit_cost_is_the_exact_saving_of_one_channel():
    # Eq. 6 extended: one depthwise channel's MACs including its expand and project shares.
    for stride in (1, 2):
        full = costs.kernel_path_cost(18, 36, 10, 5, (32, 32), stride).macs
        less = costs.kernel_path_cost(18, 36, 9, 5, (32, 32), stride).macs
        assert full - less == costs.kernel_unit_macs(18, 36, 5, (32, 32), stride)
    # by hand: expand 18*32*32 + (25 + 36) * 16*16 at stride 2
    assert costs.kernel_unit_macs(18, 36, 5, (32, 32), 2) == 18 * 1024 + 61 * 256


def test_token_unit_cost_depends_on_remaining_tokens():
    space = HRNASSpace.from_preset("digits_seg")
    sample = space.max_sample()
    net = space.freeze(sample).eval()
    block = net.blocks["p2_b0_n0"]
    unit = costs.block_unit_macs(block, (16, 16))["tok"]
    # the saving from removing one token, measured by the independent counter
    x = torch.randn(1, 16, 16, 16)
    fewer = HRNASSpace.from_preset("digits_seg").freeze(
        {**sample, "p2_b0_n0_tok": sample["p2_b0_n0_tok"] - 1}
    )
    assert unit == torch_counted_macs(block, x) - torch_counted_macs(fewer.blocks["p2_b0_n0"].eval(), x)
    # quadratic in n: the marginal cost grows with the tokens still there
    t = block.transformer
    assert (
        costs.transformer_unit_macs(t, (16, 16))
        > costs.transformer_module_cost(t, (16, 16), 2).macs
        - costs.transformer_module_cost(t, (16, 16), 1).macs
    )


def test_breakdown_sums_to_total():
    net = _meta_network(get_preset("coco_keypoints"), choice_maxima(get_preset("coco_keypoints")))
    parts = net.cost_breakdown()
    assert sum(p.macs for p in parts.values()) == net.cost().macs
    assert {"stem", "head", "stage4.b3", "fusion1.b1"} <= set(parts)
