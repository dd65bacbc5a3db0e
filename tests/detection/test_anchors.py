"""The anchor head: anchor grid, matching, box coding, losses and decoding, by hand."""

import math

import pytest
import torch

from nni_hrnas.detection.anchors import (
    AnchorSettings,
    DecodeSettings,
    assign,
    decode,
    decode_detections,
    detection_loss,
    direction_bin,
    encode,
    make_anchors,
    nearest_bev_iou,
)
from search_spaces.ops.pillars import PillarSettings

GRID = PillarSettings(voxel=0.5, x_range=(0, 8), y_range=(-4, 4), max_points=4, max_pillars=10, channels=4)
CAR = AnchorSettings()


def test_anchor_grid():
    anchors = make_anchors(CAR, GRID, 2, 4)  # 2 rows (y) x 4 columns (x), 2 rotations
    assert anchors.shape == (16, 7)
    assert anchors[0].tolist() == pytest.approx([1.0, -2.0, -1.0, 3.9, 1.6, 1.56, 0.0])
    assert anchors[1, 6] == pytest.approx(math.pi / 2)
    assert anchors[2, :2].tolist() == pytest.approx([3.0, -2.0])  # next column
    assert anchors[8, :2].tolist() == pytest.approx([1.0, 2.0])  # next row


def test_nearest_bev_iou_and_assignment():
    a = torch.tensor([[0.0, 0, 0, 4, 2, 1.5, 0], [0.0, 0, 0, 4, 2, 1.5, math.pi / 2]])
    b = torch.tensor([[1.0, 0, 0, 4, 2, 1.5, 0.1]])  # nearly along x: taken as axis-aligned
    iou = nearest_bev_iou(a, b)
    assert iou[0, 0] == pytest.approx(6 / 10)  # 3 x 2 overlap, union 8 + 8 - 6
    assert iou[1, 0] == pytest.approx(4 / 12)  # crossed: x from -1 to 1, y from -1 to 1 overlap
    anchors = make_anchors(CAR, GRID, 4, 8)
    gt = torch.tensor([[3.5, -1.0, -1.0, 3.9, 1.6, 1.56, 0.0]])  # on an anchor centre
    labels, matched = assign(anchors, gt, CAR)
    exact = ((anchors[:, :2] - gt[:, :2]).abs().sum(1) < 1e-6) & (anchors[:, 6] == 0)
    assert labels[exact].tolist() == [1] and torch.equal(matched[exact][0], gt[0])
    far = (anchors[:, 0] - 3.5).abs() + (anchors[:, 1] + 1).abs() > 5
    assert (labels[far] == 0).all()
    # a box between anchors still gets its best anchor as a positive
    labels, _ = assign(anchors, torch.tensor([[2.0, 0.0, -1.0, 3.9, 1.6, 1.56, 0.8]]), CAR)
    assert (labels == 1).sum() >= 1


def test_box_coding_round_trip_and_direction():
    anchors = make_anchors(CAR, GRID, 2, 2)
    boxes = anchors.clone()
    boxes[:, :3] += torch.tensor([0.3, -0.2, 0.1])
    boxes[:, 3:6] *= 1.1
    boxes[:, 6] += 0.4
    codes = encode(boxes, anchors)
    assert codes[0, 0] == pytest.approx(0.3 / math.hypot(3.9, 1.6))
    assert codes[0, 3] == pytest.approx(math.log(1.1))
    torch.testing.assert_close(decode(codes, anchors), boxes)
    assert direction_bin(torch.tensor([0.1, 3.0, -0.1, -3.0, 3.3])).tolist() == [0, 0, 1, 1, 1]


def _outputs_for(boxes, height=4, width=8, settings=CAR, logit=8.0):
    """Head outputs that put each box on the anchors matched to it, with a high score; everything else low."""
    anchors = make_anchors(settings, GRID, height, width)
    a = settings.per_location
    out = torch.zeros(1, a * 10, height, width)
    out[:, :a] = -8.0
    labels, matched = assign(anchors, boxes, settings)
    for k in (labels == 1).nonzero().flatten().tolist():
        cell, r = divmod(k, a)
        i, j = divmod(cell, width)
        out[0, r, i, j] = logit
        out[0, a + r * 7 : a + r * 7 + 7, i, j] = encode(matched[k : k + 1], anchors[k : k + 1])[0]
        out[0, a * 8 + r * 2 + int(direction_bin(matched[k, 6:7])), i, j] = 5.0
    return out


def test_decoding_recovers_boxes_with_their_heading():
    boxes = torch.tensor([[3.0, -1.0, -1.0, 4.2, 1.7, 1.5, 2.9], [5.5, 2.0, -0.9, 3.8, 1.6, 1.5, -1.4]])
    out = _outputs_for(boxes)
    ((found, scores),) = decode_detections(out, CAR, GRID, DecodeSettings(score_threshold=0.5))
    assert len(found) == 2 and (scores > 0.99).all()
    order = found[:, 0].argsort()
    torch.testing.assert_close(
        found[order], boxes, atol=1e-5, rtol=0
    )  # 2.9 rad and -1.4 rad: not turned by pi


def test_loss_is_lower_for_the_right_outputs():
    boxes = torch.tensor([[3.0, -1.0, -1.0, 4.2, 1.7, 1.5, 2.9]])
    gt = torch.zeros(1, 4, 8)
    gt[0, 0] = torch.cat([torch.ones(1), boxes[0]])
    right = detection_loss(_outputs_for(boxes), gt, CAR, GRID)
    turned = boxes.clone()
    turned[0, 6] -= math.pi  # the same box facing the other way: only the direction loss tells
    flipped = detection_loss(_outputs_for(turned), gt, CAR, GRID)
    wrong = detection_loss(_outputs_for(torch.tensor([[6.0, 2.0, -1.0, 4.2, 1.7, 1.5, 0.0]])), gt, CAR, GRID)
    assert right["box"] < 1e-3 and right["dir"] < 0.01
    assert flipped["box"] < 1e-3 and flipped["dir"] > 1.0  # sine loss blind to pi, the direction bin is not
    assert wrong["loss"] > right["loss"] + 1.0
    # no ground truth: only the classification loss, no NaN
    empty = detection_loss(_outputs_for(boxes), torch.zeros(1, 4, 8), CAR, GRID)
    assert torch.isfinite(empty["loss"]) and empty["box"] == 0
