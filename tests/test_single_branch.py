"""Table 6's single-branch space (``--space layout=single_branch``): its topology on the built network,
the CLI, bad values, and a run folder that reloads with equal outputs."""

from __future__ import annotations

import dataclasses
import json
import random

import pytest
import torch
from reference import randomize_bn

from nni_hrnas.cli import main as hrnas
from nni_hrnas.run_folder import RunFolder, SearchResult
from search_spaces import ConfigError, HRNASNetwork, HRNASSpace, choice_maxima, get_preset
from search_spaces.config import parse_space_overrides

SINGLE = "layout=single_branch"

# digits_seg's single branch written out by hand: (block, in channels, out channels, stride, input side)
# at a 64x64 input: the stem takes it to 16x16 (1/4); modules 0..4 run at 1/4, 1/8, 1/16, 1/32, 1/32
# with the width of their coarsest branch and as many blocks as all their branches together.
DIGITS_SEG_BLOCKS = [
    ("p0_b0_n0", 16, 16, 1, 16),
    ("f1_o1_i0", 16, 32, 2, 16),
    ("p1_b1_n0", 32, 32, 1, 8),
    ("p1_b1_n1", 32, 32, 1, 8),
    ("f2_o2_i1", 32, 48, 2, 8),
    *((f"p2_b2_n{n}", 48, 48, 1, 4) for n in range(3)),
    ("f3_o3_i2", 48, 64, 2, 4),
    *((f"p3_b3_n{n}", 64, 64, 1, 2) for n in range(4)),
    ("f4_o3_i3", 64, 64, 1, 2),
    *((f"p4_b3_n{n}", 64, 64, 1, 2) for n in range(4)),
    ("head", 16 + 32 + 48 + 64, 32, 1, 16),  # the same dense head, on the branch's feature at each resolution
]


def test_the_override_builds_one_branch_through_the_same_resolutions():
    config = get_preset("digits_seg", **parse_space_overrides([SINGLE]))
    net = HRNASNetwork(config, choice_maxima(config)).eval()
    seen: dict[str, int] = {}
    for label, block in net.blocks.items():  # the input side each block really sees in a forward pass
        block.register_forward_pre_hook(
            lambda m, args, label=label: seen.__setitem__(label, args[0].shape[-1])
        )
    with torch.no_grad():
        assert net(torch.randn(1, 1, 64, 64)).shape == (1, 11, 16, 16)
    built = [(label, b.in_channels, b.out_channels, b.stride, seen[label]) for label, b in net.blocks.items()]
    assert built == DIGITS_SEG_BLOCKS
    blocks = dict(net.blocks.items())
    # MixConv paths everywhere, transformers where the shape is kept (the default placement)
    assert all(set(b.paths) == {"k3", "k5", "k7"} for b in blocks.values())
    assert [label for label, b in blocks.items() if b.transformer is not None] == [
        label for label, c_in, c_out, stride, _ in DIGITS_SEG_BLOCKS if c_in == c_out and stride == 1
    ]
    multi = get_preset("digits_seg")
    with torch.device("meta"):
        multi_macs = HRNASNetwork(multi, choice_maxima(multi)).cost().macs
    assert 0.5 * multi_macs < net.cost().macs < multi_macs  # the same range as the multi-branch supernet


def test_classification_head_gets_one_feature_per_resolution():
    space = HRNASSpace.from_preset("digits_cls", layout="single_branch")
    head_inputs = {
        label: b.in_channels for label, b in space.network.blocks.items() if label.startswith("cls_b")
    }
    assert head_inputs == {"cls_b0": 16, "cls_b1": 32, "cls_b2": 48, "cls_b3": 64}
    net = space.freeze(space.max_sample()).eval()
    with torch.no_grad():
        assert net(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_flops_of_the_single_branch_space(capsys):
    assert hrnas(["flops", "--preset", "digits_seg", "--json", "--space", SINGLE]) == 0
    single = json.loads(capsys.readouterr().out)
    config = get_preset("digits_seg", layout="single_branch")
    with torch.device("meta"):
        want = HRNASNetwork(config, choice_maxima(config)).cost()
    assert (single["macs"], single["params"]) == (want.macs, want.params)
    assert set(single["branches"]) == {"stem", "b0", "b1", "b2", "b3", "head"}


def test_an_unknown_layout_is_one_line_naming_the_allowed_values(capsys):
    assert hrnas(["flops", "--preset", "digits_seg", "--space", "layout=two_branch"]) == 2
    err = capsys.readouterr().err.strip()
    assert "layout" in err and "multi_branch, single_branch" in err and "\n" not in err
    with pytest.raises(ConfigError, match="allowed: multi_branch, single_branch"):
        get_preset("digits_seg", layout="two_branch")


def test_a_run_folder_of_the_single_branch_space_reloads_with_equal_outputs(tmp_path):
    space = HRNASSpace.from_preset("digits_seg", layout="single_branch")
    rng = random.Random(0)
    arch = {label: rng.choice(values) for label, values in space.choices().items()}
    torch.manual_seed(0)
    net = space.freeze(arch)
    randomize_bn(net)
    net.eval()
    macs = net.cost().macs
    result = SearchResult(
        macs=macs,
        params=sum(p.numel() for p in net.parameters()),
        metric=0.5,
        arch=arch,
        task="digits_seg",
        preset="digits_seg",
        input_size=space.config.input_size,
        config=json.loads(json.dumps(dataclasses.asdict(space.config))),  # as result.json holds it
    )
    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    folder.save(arch, net, result)
    model = folder.load_model()
    assert model.config.layout == "single_branch" and model.cost().macs == macs
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), net(x), rtol=0, atol=0)
