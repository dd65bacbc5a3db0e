"""The inference form (BNs folded, kernel paths merged): same outputs, same MACs, fewer ops."""

import random

import pytest
import torch
from reference import randomize_bn, torch_counted_macs

from search_spaces import HRNASSpace
from search_spaces.ops import SearchingBlock
from search_spaces.ops.fuse import FusedSearchingBlock, fuse_for_inference


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(kernel_widths={3: 8, 5: 4, 7: 2}, num_tokens=4),
        dict(kernel_widths={3: 0, 5: 6, 7: 0}),
        dict(kernel_widths={3: 5, 5: 0, 7: 3}, stride=2),
        dict(kernel_widths={3: 0, 5: 0, 7: 0}, num_tokens=2),
    ],
)
def test_fused_block_equals_the_block(kwargs):
    torch.manual_seed(0)
    block = SearchingBlock(6, 10 if kwargs.get("stride") else 6, **kwargs)
    randomize_bn(block)
    block.eval()
    fused = fuse_for_inference(block)
    assert isinstance(fused, FusedSearchingBlock)
    x = torch.randn(2, 6, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), block(x), rtol=1e-5, atol=1e-5)
    assert (fused.mix is None) == (len(block.paths) == 0)
    if fused.mix is not None:  # one expand, one depthwise conv per kernel size, one project; no BN left
        assert len(fused.mix.depthwise) == len(block.paths)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.mix.modules())


# placement "all": transformers in the stride-2, upsampling and head blocks too
@pytest.mark.parametrize("placement", ["identity", "all"])
def test_fused_network_same_outputs_and_macs_fewer_ops(placement):
    space = HRNASSpace.from_preset("tiny", transformer={"placement": placement})
    rng = random.Random(3)
    arch = {label: rng.choice(values) for label, values in space.choices().items()}
    net = space.freeze(arch)
    randomize_bn(net, seed=1)
    net.eval()
    fused = fuse_for_inference(net)
    x = torch.randn(2, *net.config.input_size)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), net(x), rtol=1e-4, atol=1e-5)
    # the same multiply-accumulates (convs only concatenated), counted independently
    assert torch_counted_macs(fused, x) == torch_counted_macs(net, x)
    convs = lambda m: sum(isinstance(c, torch.nn.Conv2d) for c in m.modules())  # noqa: E731
    norms = lambda m: sum(isinstance(c, torch.nn.BatchNorm2d) for c in m.modules())  # noqa: E731
    assert convs(fused) < convs(net) and norms(fused) < norms(net)
    assert net.training is False and any(isinstance(m, SearchingBlock) for m in net.modules())  # left intact


@pytest.mark.parametrize("multiple", [4, 8])
def test_padded_paths_give_the_same_outputs_at_whole_multiples_of_channels(multiple):
    """Deployment pads each kernel path with zero channels (onnxruntime's blocked layout is much faster
    on whole blocks): the outputs must not move, and each path must take exactly the padded width."""
    torch.manual_seed(0)
    widths = {3: 5, 5: 8, 7: 3}
    block = SearchingBlock(6, 6, kernel_widths=widths, num_tokens=2)
    randomize_bn(block)
    block.eval()
    fused = fuse_for_inference(block, channel_multiple=multiple)
    padded = [-(-w // multiple) * multiple for w in widths.values()]  # ceil to the multiple, by hand
    assert [conv.out_channels for conv in fused.mix.depthwise] == padded
    assert fused.mix.expand.out_channels == fused.mix.project.in_channels == sum(padded)
    x = torch.randn(2, 6, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), block(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="channel_multiple"):
        fuse_for_inference(block, channel_multiple=0)
