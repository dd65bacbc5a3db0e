"""Choice labels: every label the space builds parses back to its block and choice, and nothing else parses."""

from __future__ import annotations

import pytest

from search_spaces import HRNASSpace, labels


@pytest.mark.parametrize("preset", ["digits_seg", "digits_cls"])
def test_every_label_of_a_space_parses_back_to_its_block(preset):
    space = HRNASSpace.from_preset(preset, kernels=(3, 5, 7, 9))  # a kernel size the old parsers did not know
    net = space.freeze(space.max_sample())
    blocks = {slot.label: slot for slot, _ in net.searching_blocks()}
    seen = set()
    for label in space.choices():
        block, choice = labels.split_label(label)
        assert block in blocks and labels.choice_label(block, choice) == label
        seen.add(choice)
        if labels.is_tokens(label):
            assert labels.kernel_size(label) is None and blocks[block].has_transformer
        else:
            assert labels.kernel_size(label) in (3, 5, 7, 9)
    assert seen == {"k3", "k5", "k7", "k9", "tok"}
    kinds = {labels.parse_block(b).kind for b in blocks}
    assert kinds == (
        {"parallel", "fusion", "cls_branch", "cls_down"}
        if preset == "digits_cls"
        else {"parallel", "fusion", "head"}
    )


def test_block_places_by_hand():
    assert labels.parse_block("p3_b2_n1") == ("parallel", 3, 2, 1)
    assert labels.parse_block("f4_o0_i1") == ("fusion", 4, 0, 1)
    assert labels.parse_block("cls_d2") == ("cls_down", -1, 0, 2)
    assert labels.parse_block("head") == ("head", -1, 0, 0)
    assert labels.kernel_size("p0_b0_n0_k11") == 11


@pytest.mark.parametrize(
    "bad", ["p1_b0_n0", "p1_b0_n0_k0", "p1_b0_k3", "x_k3", "head_tokens", "head_k", "_k3"]
)
def test_what_is_not_a_label_is_refused_by_name(bad):
    with pytest.raises(ValueError, match="not a choice label"):
        labels.split_label(bad)
    assert not labels.is_label(bad)


def test_the_architecture_figure_draws_every_kernel_size():
    from analysis.figures import architecture_figure

    space = HRNASSpace.from_preset("digits_seg", kernels=(3, 5, 9))
    arch = space.max_sample()
    names = {trace.name for trace in architecture_figure([("run", arch, arch)]).data}
    assert {"3x3 kept", "5x5 kept", "9x9 kept"} <= names and "7x7 kept" not in names
