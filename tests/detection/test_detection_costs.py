"""Costs of the detection networks against torch's counter; the pillar front end inside the network."""

import pytest
import torch
from reference import parameter_count, torch_counted_macs

from nni_hrnas.detection.pillars import pillarise
from search_spaces import HRNASNetwork, HRNASSpace, choice_maxima, get_preset
from search_spaces.pointpillars import RPN_PRESETS, PointPillarsRPN


@pytest.mark.parametrize("name", sorted(RPN_PRESETS))
def test_rpn_cost_is_exact(name):
    config = RPN_PRESETS[name]
    with torch.device("meta"):
        net = PointPillarsRPN(config).eval()
        counted = torch_counted_macs(net, torch.empty(1, *config.input_size))
    predicted = net.cost()
    assert predicted.macs == counted
    assert predicted.params == parameter_count(net)


def test_published_rpn_by_hand():
    # 3x3 convs at 248x216, 124x108, 62x54; transposed convs to 128 channels; a 1x1 head to 20 outputs
    a1, a2, a3 = 248 * 216, 124 * 108, 62 * 54
    convs = (
        (64 * 64 * 9 * 4) * a1
        + (64 * 128 * 9 + 5 * 128 * 128 * 9) * a2
        + (128 * 256 * 9 + 5 * 256 * 256 * 9) * a3
    )
    ups = 64 * 128 * a1 + 128 * 128 * 4 * a2 + 256 * 128 * 16 * a3
    assert PointPillarsRPN().cost((64, 496, 432)).macs == convs + ups + 384 * 20 * a1


def test_packed_pillars_and_pseudo_image_give_the_same_outputs():
    torch.manual_seed(0)
    config = get_preset("kitti_sim")
    space = HRNASSpace(config)
    net = space.freeze(space.max_sample()).eval()
    cloud = torch.rand(3000, 4) * torch.tensor([32.0, 32.0, 3.0, 1.0]) - torch.tensor([0.0, 16.0, 2.0, 0.0])
    packed = pillarise(cloud, config.pillars)[None]
    out = net(packed)
    assert out.shape == (1, config.num_outputs, 64, 64)  # 1/2 of the 128 x 128 grid, as the RPN's
    torch.testing.assert_close(out, net(net.frontend(packed)))
    rpn = PointPillarsRPN(RPN_PRESETS["pointpillars_sim"]).eval()
    assert rpn(packed).shape == (1, 20, 64, 64)
    # the cost counts the pillar net's parameters, and the network's MACs on the pseudo-image
    with torch.device("meta"):
        meta = HRNASNetwork(config, choice_maxima(config))
    assert meta.cost().params == parameter_count(net)
