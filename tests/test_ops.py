"""The plain-PyTorch ops: lightweight transformer and searching block."""

import math

import pytest
import torch
import torch.nn.functional as F
from reference import parameter_count, torch_counted_macs
from torch import nn

from search_spaces.costs import kernel_path_cost, transformer_module_cost
from search_spaces.ops import LightweightTransformer, SearchingBlock, coordinate_map


def test_coordinate_map_matches_eq2_by_hand():
    p = coordinate_map(2, 4)
    assert p.shape == (2, 2, 4)
    assert p[0].tolist() == [[0, 0, 0, 0], [0.5, 0.5, 0.5, 0.5]]
    assert p[1].tolist() == [[0, 0.25, 0.5, 0.75]] * 2


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("pos", ["map", "sinusoidal", "learned", "none"])
def test_transformer_shapes(stride, pos):
    t = LightweightTransformer(
        12, 20, num_tokens=6, size=4, stride=stride, pos_encoding=pos, pos_in_decoder=pos != "none", pos_dim=8
    )
    y = t(torch.randn(3, 12, 16, 24))
    assert y.shape == (3, 20, 16 // stride, 24 // stride)


def test_zero_tokens_adds_nothing():
    t = LightweightTransformer(8, 8, num_tokens=0)
    assert parameter_count(t) == 0
    x = torch.randn(2, 8, 16, 16)
    assert torch.equal(x + t(x), x)


def test_projector_resize_first_equals_conv_first():
    # The paper convolves at full resolution and then resizes; we resize first. Both are affine
    # per pixel / per channel with bilinear weights summing to 1, so the tokens must agree.
    torch.manual_seed(0)
    t = LightweightTransformer(6, 6, num_tokens=5, size=4).eval()
    with torch.no_grad():
        t.proj_bn.running_mean.uniform_(-1, 1)
        t.proj_bn.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 6, 24, 20)
    pos = coordinate_map(24, 20)[None].expand(2, -1, -1, -1)
    full = t.proj_bn(t.proj(torch.cat([x, pos], 1)))  # paper order: conv + BN at 24x20
    paper = F.interpolate(full, size=(4, 4), mode="bilinear", align_corners=False)
    small = F.interpolate(torch.cat([x, pos], 1), size=(4, 4), mode="bilinear", align_corners=False)
    ours = t.proj_bn(t.proj(small))
    torch.testing.assert_close(ours, paper, rtol=1e-5, atol=1e-5)


def test_decoder_has_cross_attention_only():
    t = LightweightTransformer(8, 8, num_tokens=4, size=2)
    names = {n for n, _ in t.named_modules()}
    assert "decoder_attn" in names and "encoder_attn" in names
    assert not any("decoder_self" in n for n in names)
    # queries are learnable, batch independent, one per token
    assert t.queries.weight.shape == (4, 2 * 2)


def _train_global_task(with_transformer: bool) -> list[float]:
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 16, 3, padding=1)
            self.t = LightweightTransformer(16, 16, num_tokens=8 if with_transformer else 0, size=4)
            self.head = nn.Conv2d(16, 2, 1)

        def forward(self, x):
            h = F.relu(self.conv(x))
            return self.head(h + self.t(h))

    net = Net()
    # Needs global context: every pixel is labelled with whether the image holds a bright patch
    # anywhere, which a 3x3 conv alone cannot see from most pixels.
    g = torch.Generator().manual_seed(1)
    x = 0.5 * torch.randn(64, 3, 16, 16, generator=g)
    present = torch.arange(64) % 2 == 0
    for i in torch.nonzero(present).flatten().tolist():
        r, c = torch.randint(0, 14, (2,), generator=g).tolist()
        x[i, :, r : r + 3, c : c + 3] += 3.0
    y = present.long()[:, None, None].expand(-1, 16, 16)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(150):
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_transformer_plugs_into_a_cnn_and_adds_global_context():
    with_t, without_t = _train_global_task(True), _train_global_task(False)
    assert with_t[-1] < 0.1 * with_t[0]
    assert with_t[-1] < 0.2 * without_t[-1]


def test_block_with_every_path_removed_is_its_shortcut():
    block = SearchingBlock(8, 8, kernel_widths={3: 0, 5: 0, 7: 0}, num_tokens=0)
    x = torch.randn(2, 8, 8, 8)
    assert parameter_count(block) == 0 and torch.equal(block(x), x)
    reduce = SearchingBlock(12, 18, stride=2, kernel_widths={3: 0, 5: 0, 7: 0})
    assert reduce.shortcut.groups == math.gcd(12, 18) == 6
    assert reduce(torch.randn(1, 12, 8, 8)).shape == (1, 18, 4, 4)


def test_block_widths_are_exact_and_zero_removes_a_path():
    block = SearchingBlock(16, 16, kernel_widths={3: 5, 5: 0, 7: 9}, num_tokens=3)
    assert set(block.paths) == {"k3", "k7"}
    assert block.paths["k3"].dw.out_channels == 5 and block.paths["k7"].dw.groups == 9
    assert block.transformer.proj.out_channels == 3


@pytest.mark.parametrize("stride", [1, 2])
def test_block_costs_match_torch_counter_by_hand_sizes(stride):
    block = SearchingBlock(12, 20, stride=stride, kernel_widths={3: 7, 5: 4, 7: 2}, num_tokens=5).eval()
    x = torch.randn(1, 12, 16, 16)
    # hand count of the k3 path: expand 12*7*256, depthwise 9*7*(256/s^2), project 7*20*(256/s^2)
    out_area = (16 // stride) ** 2
    assert (
        kernel_path_cost(12, 20, 7, 3, (16, 16), stride).macs
        == 12 * 7 * 256 + 9 * 7 * out_area + 7 * 20 * out_area
    )
    # transformer at n=5, s=8, d=64, FFN 4*64: hand-expanded Sec. 3.1 formula
    n, s2, d, hid = 5, 64, 64, 256
    hand = (12 + 2) * n * s2 + n * 20 * s2 + 2 * (4 * n * s2 * d + 2 * n * n * d + 2 * n * s2 * hid)
    assert transformer_module_cost(block.transformer, (16, 16)).macs == hand
    from search_spaces.costs import searching_block_cost

    assert searching_block_cost(block, (16, 16)).macs == torch_counted_macs(block, x)
    assert searching_block_cost(block, (16, 16)).params == parameter_count(block)


def test_token_importance_is_a_real_gate_on_the_output():
    """The search's token importance must set the token's share of the output: the projector BN's
    scale is normalised away by the encoder's residual LayerNorm, so halving it barely changes the
    output and the task loss could not defend a token against the L1 penalty."""
    from nni_hrnas.strategy.units import unit_groups
    from search_spaces import HRNASSpace

    torch.manual_seed(0)
    space = HRNASSpace.from_preset("tiny")
    net = space.freeze(space.max_sample()).eval()
    label, block = next((s.label, b) for s, b in net.searching_blocks() if b.transformer is not None)
    t = block.transformer
    x = torch.randn(4, t.in_channels, 8, 8)
    with torch.no_grad():
        base = t(x)

    def relative_change_when_halved(weight: torch.Tensor) -> float:
        with torch.no_grad():
            weight.mul_(0.5)
            out = t(x)
            weight.mul_(2.0)
        return float((out - base).norm() / base.norm())

    importance = next(g.bn for g in unit_groups(net, (3, 32, 32)) if g.label == f"{label}_tok")
    assert relative_change_when_halved(importance.weight) > 0.3
    assert relative_change_when_halved(t.proj_bn.weight) < 0.1
