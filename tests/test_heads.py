"""Task heads (search_spaces/heads.py): one per task kind, chosen from the config; each keeps the layer
names, block labels and costs that checkpoints, architectures and results written before rely on."""

import dataclasses

import pytest

from search_spaces import ConfigError, HRNASSpace, costs, get_preset
from search_spaces.config import TASK_KINDS
from search_spaces.heads import HEADS, ClassificationHead, DenseHead, DetectionHead
from search_spaces.hrnas import plan_blocks
from search_spaces.ops.pillars import PillarSettings


def test_every_task_kind_has_one_head_chosen_from_the_config():
    assert TASK_KINDS == ("segmentation", "keypoints", "classification", "detection") == tuple(HEADS)
    kinds = {
        name: type(get_preset(name).head) for name in ("cityscapes", "coco_keypoints", "imagenet", "kitti")
    }
    assert kinds == {
        "cityscapes": DenseHead,
        "coco_keypoints": DenseHead,
        "imagenet": ClassificationHead,
        "kitti": DetectionHead,
    }
    space = HRNASSpace.from_preset("digits_cls")
    assert type(space.freeze(space.max_sample()).task_head) is ClassificationHead


# What checkpoints written before the heads became objects hold (flat names, not under a head module),
# and the labels of the heads' searching blocks that architecture files hold.
HEAD_STATE = {
    "digits_seg": {"classifier.weight": (11, 32, 1, 1), "classifier.bias": (11,)},
    # since the detection head's anchors moved to stride 2: its upsampling before the classifier
    "kitti_sim": {
        "upsample.0.weight": (32, 32, 2, 2),
        "upsample.1.weight": (32,),
        "upsample.1.bias": (32,),
        "upsample.1.running_mean": (32,),
        "upsample.1.running_var": (32,),
        "upsample.1.num_batches_tracked": (),
        "classifier.weight": (20, 32, 1, 1),
        "classifier.bias": (20,),
    },
    "digits_cls": {
        "cls_final.0.weight": (256, 96, 1, 1),
        "cls_final.1.weight": (256,),
        "cls_final.1.bias": (256,),
        "cls_final.1.running_mean": (256,),
        "cls_final.1.running_var": (256,),
        "cls_final.1.num_batches_tracked": (),
        "classifier.weight": (10, 256),
        "classifier.bias": (10,),
    },
}
HEAD_BLOCKS = {
    "digits_seg": ["head"],
    "kitti_sim": ["head"],
    "digits_cls": ["cls_b0", "cls_b1", "cls_b2", "cls_b3", "cls_d0", "cls_d1", "cls_d2"],
}


@pytest.mark.parametrize("name", sorted(HEAD_STATE))
def test_head_layers_and_blocks_keep_their_names(name):
    space = HRNASSpace.from_preset(name)
    net = space.freeze(space.max_sample())
    state = net.state_dict()
    own = {k: tuple(v.shape) for k, v in state.items() if not k.startswith(("stem.", "blocks.", "frontend."))}
    assert own == HEAD_STATE[name]
    assert list(own) == list(HEAD_STATE[name])  # registered in the same order: the same safetensors layout
    assert [s.label for s in plan_blocks(space.config) if s.group == "head"] == HEAD_BLOCKS[name]


def test_head_costs_are_the_hand_counted_ones():
    """digits_cls at 32x32: cls_final 96 -> 256 at the coarsest branch (1/32: 1x1), BN + ReLU, and a
    256 -> 10 linear. digits_seg at 64x64, all at 1/4 (16x16): three branches (32, 48, 64 channels)
    upsampled, ReLU over the 32-channel head block, a 1x1 conv 32 -> 11 with bias."""
    cls = get_preset("digits_cls").head.cost(32, 32)
    assert cls == costs.Cost(
        macs=96 * 256 + 256 * 10, params=96 * 256 + 2 * 256 + 256 * 10 + 10, norm_act=2 * 256
    )
    seg = get_preset("digits_seg").head.cost(64, 64)
    assert seg == costs.Cost(
        macs=32 * 11 * 16 * 16, params=32 * 11 + 11, interp=(32 + 48 + 64) * 16 * 16, norm_act=32 * 16 * 16
    )
    # kitti_sim at 128x128: the dense head at 1/4 (32x32, branches 32 and 48 upsampled, ReLU), then a
    # 2x2 stride-2 transposed conv 32 -> 32 (each 1/4 pixel once), BN + ReLU and the 1x1 conv 32 -> 20 at 1/2
    det = get_preset("kitti_sim").head.cost(128, 128)
    assert det == costs.Cost(
        macs=32 * 32 * 4 * 32 * 32 + 32 * 20 * 64 * 64,
        params=32 * 32 * 4 + 2 * 32 + 32 * 20 + 20,
        interp=(32 + 48) * 32 * 32,
        norm_act=32 * 32 * 32 + 2 * 32 * 64 * 64,
    )


def test_each_head_checks_its_own_fields():
    with pytest.raises(
        ConfigError, match=r"cls_channels=\(1, 2\): expected one width per branch of the last stage \(4\)"
    ):
        get_preset("digits_cls", cls_channels=(1, 2))
    with pytest.raises(ConfigError, match="cls_final_channels=0"):
        get_preset("digits_cls", cls_final_channels=0)
    get_preset("digits_seg", cls_channels=(1, 2))  # a dense head does not read them


def test_only_the_detection_head_takes_a_pillar_front_end():
    assert [kind for kind, head in HEADS.items() if head.takes_pillars] == ["detection"]
    sim = get_preset("kitti_sim")
    with pytest.raises(ConfigError, match="a pillar front end needs task='detection'"):
        dataclasses.replace(sim, task="segmentation")
    assert get_preset("kitti").pillars == PillarSettings()


def test_each_head_says_what_its_output_is_for_the_model_card():
    # the texts and shapes the model card gave before the heads said them (deploy.py branched on the task)
    assert get_preset("digits_cls").head.output(32, 32) == {
        "shape": ["B", 10],
        "meaning": "class logits (10 classes); softmax for probabilities",
    }
    assert get_preset("digits_kp").head.output(64, 48) == {
        "shape": ["B", 4, 16, 12],
        "meaning": "one heatmap per keypoint (4) at 1/4 of the input size; the peak is the keypoint",
    }
    assert get_preset("digits_seg").head.output(64, 64) == {
        "shape": ["B", 11, 16, 16],
        "meaning": "per-pixel class logits (11 classes) at 1/4 of the input size; "
        "resize bilinearly to the input size, then argmax over classes",
    }
    detection = get_preset("kitti_sim").head.output(128, 128)
    assert detection["shape"] == ["B", 20, 64, 64] and "anchor predictions (20 maps" in detection["meaning"]


def test_the_input_normalisation_is_the_task_data_sets():
    from nni_hrnas.data.digits import DIGITS_MEAN, DIGITS_STD
    from nni_hrnas.tasks.registry import input_normalisation

    digits = input_normalisation("digits_kp")
    assert (digits.mean, digits.std, digits.pixels) == ((0.1,), (0.25,), "grey values / 255")
    assert (DIGITS_MEAN, DIGITS_STD) == (0.1, 0.25)  # what the digits data sets normalise with
    for name in ("cityscapes", "imagenet", "segmentation"):  # a run folder naming no task: its kind
        real = input_normalisation(name)
        assert real.mean == pytest.approx((0.485, 0.456, 0.406)) and real.std == pytest.approx(
            (0.229, 0.224, 0.225)
        )
        assert real.pixels == "RGB values / 255"


@pytest.mark.parametrize("network", ["kitti_sim", "pointpillars_sim"])
def test_a_new_detection_network_scores_every_anchor_near_the_focal_prior(network):
    """RetinaNet's initialisation (PointPillars and SECOND use it): the class logits start at
    log(0.01 / 0.99), so a fresh network scores its anchors about 0.01, not 0.5; box and direction
    maps keep their default zero-mean start."""
    import math

    import torch

    from search_spaces.pointpillars import RPN_PRESETS, PointPillarsRPN

    torch.manual_seed(0)
    if network in RPN_PRESETS:
        model = PointPillarsRPN(RPN_PRESETS[network])
    else:
        space = HRNASSpace.from_preset(network)
        model = space.freeze(space.max_sample())
    with torch.no_grad():
        out = model.train()(torch.randn(2, 32, 128, 128))
    anchors = out.shape[1] // 10  # per anchor: a class logit, 7 box residuals, 2 direction logits
    scores = torch.sigmoid(out[:, :anchors])
    assert 0.002 < scores.median() < 0.05 and scores.mean() < 0.1
    # the hand value: sigmoid(log(0.01 / 0.99)) = 0.01 exactly, where the features add nothing
    assert math.isclose(torch.sigmoid(model.classifier.bias[:anchors]).mean().item(), 0.01, rel_tol=1e-6)
    assert out[:, anchors:].mean().abs() < 0.5
