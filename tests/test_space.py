"""The HR-NAS model space: presets, freezing, labels, validation."""

import json

import pytest
import torch
from reference import parameter_count

from search_spaces import PRESETS, ConfigError, HRNASSpace, get_preset
from search_spaces.hrnas import plan_blocks, width_choices


@pytest.fixture(scope="module")
def tiny():
    return HRNASSpace.from_preset("tiny")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_with_explicit_labels(name):
    space = HRNASSpace.from_preset(name)
    choices = space.choices()
    assert choices and all("/" not in label for label in choices)
    # one choice per kernel path and one per transformer, each from 0 to its maximum
    assert all(
        values[0] == 0 and values[-1] == space.max_sample()[label] for label, values in choices.items()
    )
    labels = {m.label for m in space.simplify().values()}
    assert labels == set(choices)


def test_official_supernet_shape():
    config = get_preset("cityscapes")
    assert [s.branches for s in config.stages] == [1, 2, 3, 4, 4]
    space = HRNASSpace(config)
    maxima = space.max_sample()
    assert maxima["p0_b0_n0_k3"] == 4 * 24  # expansion 4 per kernel path: 12 x C_in channels per block
    assert maxima["p3_b3_n3_tok"] == 64 and "f4_o3_i3_tok" in maxima  # identity blocks carry transformers
    # the paper's placement: every searching block, the new branch's stride-2 block, the upsampling
    # and channel-changing fusion blocks and the head included
    assert all(f"{label}_tok" in maxima for label in ("f1_o1_i0", "f2_o0_i1", "f2_o1_i0", "head"))
    # placement 'identity' (the CPU presets'): only the blocks that keep their shape
    identity = HRNASSpace(config.replace(transformer={"placement": "identity"})).max_sample()
    assert "f1_o1_i0_tok" not in identity  # the new branch's stride-2 block keeps no transformer
    assert "f4_o3_i3_tok" in identity and "head_tok" not in identity
    assert maxima["head_k5"] == 4 * (18 + 36 + 72 + 144)  # head block on the 270-channel concat
    assert "p2_b2_n2_k7" in maxima and "p2_b2_n3_k7" not in maxima


def test_paper_presets_put_a_transformer_in_every_searching_block_cpu_presets_on_identity_blocks():
    for name in ("cityscapes", "ade20k", "coco_keypoints", "imagenet", "kitti"):
        slots = plan_blocks(get_preset(name))
        assert all(slot.has_transformer for slot in slots), name
        assert any(slot.stride == 2 for slot in slots) and any(slot.upsample for slot in slots)
    for name in ("digits_seg", "digits_cls", "digits_kp", "kitti_sim", "tiny"):
        for slot in plan_blocks(get_preset(name)):
            assert slot.has_transformer == (slot.stride == 1 and slot.in_channels == slot.out_channels), name


@pytest.mark.parametrize("name", ["tiny", "digits_seg", "digits_cls", "digits_kp"])
def test_small_presets_forward(name):
    space = HRNASSpace.from_preset(name)
    net = space.freeze(space.max_sample()).eval()
    c, h, w = space.config.input_size
    out = net(torch.randn(2, c, h, w))
    if space.config.task == "classification":
        assert out.shape == (2, space.config.num_outputs)
    else:
        assert out.shape == (2, space.config.num_outputs, h // 4, w // 4)
    # the space's own dry run is the whole supernet
    assert space(torch.randn(2, c, h, w)).shape == out.shape


def test_freeze_gives_exact_compact_widths(tiny):
    import random

    rng = random.Random(0)
    sample = {label: rng.choice(values) for label, values in tiny.choices().items()}
    sample["p1_b0_n0_k3"], sample["p1_b0_n0_k5"], sample["p1_b0_n0_k7"], sample["p1_b0_n0_tok"] = 3, 0, 0, 0
    net = tiny.freeze(sample)
    for label, value in sample.items():
        block, kind = label.rsplit("_", 1)
        module = net.blocks[block]
        if kind == "tok":
            assert (module.transformer.proj.out_channels if module.transformer else 0) == value
        else:
            path = module.paths[kind] if kind in module.paths else None
            assert (path.dw.out_channels if path else 0) == value
    assert set(net.blocks["p1_b0_n0"].paths) == {"k3"} and net.blocks["p1_b0_n0"].transformer is None
    # plain torch: no NNI module survives freezing
    assert not any(type(m).__module__.startswith("nni.") for m in net.modules())
    json.dumps(net.arch)  # the arch dict is plain JSON


def test_granularity_rounds_up_never_down():
    assert width_choices(10, 4) == [0, 4, 8, 10]
    space = HRNASSpace.from_preset("tiny", granularity=3, token_granularity=2)
    assert space.choices()["p0_b0_n0_k3"] == [0, 3, 6, 8]
    assert space.choices()["p0_b0_n0_tok"] == [0, 2, 4]
    assert space.round_up({"p0_b0_n0_k3": 4, "p0_b0_n0_k5": 7, "p0_b0_n0_tok": 1}) == {
        "p0_b0_n0_k3": 6,
        "p0_b0_n0_k5": 8,
        "p0_b0_n0_tok": 2,
    }
    with pytest.raises(ConfigError, match=r"p0_b0_n0_k3.*steps of 3"):
        space.freeze({**space.max_sample(), "p0_b0_n0_k3": 4})


def test_without_transformer_override():
    space = HRNASSpace.from_preset("digits_seg", transformer=False)
    assert not any(label.endswith("_tok") for label in space.choices())
    net = space.freeze(space.max_sample())
    assert all(block.transformer is None for block in net.blocks.values())
    full = HRNASSpace.from_preset("digits_seg")
    assert parameter_count(net) < parameter_count(full.freeze(full.max_sample()))


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"stages": [(1, [1], [24]), (3, [1, 1, 1], [8, 8, 8])]}, "stages[1].branches"),
        ({"stages": [(2, [1, 1], [24, 24])]}, "stages[0].branches"),
        ({"stages": [(1, [1], [24]), (2, [1], [8, 8])]}, "stages[1].blocks"),
        ({"stages": [(1, [1], [24]), (2, [1, 1], [8, 0])]}, "stages[1].channels[1]"),
        ({"stages": [(1, [0], [24])]}, "stages[0].blocks[0]"),
        ({"task": "depth"}, "task"),
        ({"expansion": 0}, "expansion"),
        ({"kernels": (3, 4)}, "kernels"),
        ({"input_size": (3, 500, 1024)}, "input_size"),
        ({"transformer": {"placement": "sometimes"}}, "transformer.placement"),
        ({"transformer": {"pos_encoding": "rotary"}}, "transformer.pos_encoding"),
        ({"widths": 3}, "widths"),
    ],
)
def test_bad_config_names_the_field(overrides, field):
    with pytest.raises(ConfigError) as info:
        get_preset("cityscapes", **overrides)
    assert info.value.field_name == field
    assert field in str(info.value)


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(ValueError, match="available presets: cityscapes"):
        HRNASSpace.from_preset("pascal")


def test_freeze_rejects_incomplete_or_out_of_range_samples(tiny):
    with pytest.raises(ConfigError, match="missing"):
        tiny.freeze({"p0_b0_n0_k3": 1})
    with pytest.raises(ConfigError, match=r"allowed: 0..8"):
        tiny.freeze({**tiny.max_sample(), "p0_b0_n0_k3": 9})


def test_network_takes_sizes_that_are_not_multiples_of_32(tiny):
    # whole-image evaluation (ADE20K) feeds arbitrary sizes; fusion upsamples to each branch's size
    net = tiny.freeze(tiny.max_sample()).eval()
    assert net(torch.randn(1, 3, 44, 60)).shape == (1, 3, 11, 15)
