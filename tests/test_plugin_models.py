"""The Table 8 plug-in networks: torchvision's parameter counts, the transformer's exact share, costs vs torch's counter."""

import json

import pytest
import torch
from reference import parameter_count, torch_counted_macs

from search_spaces.config import ConfigError
from search_spaces.mobilenetv2 import MobileNetV2Config
from search_spaces.ops import LightweightTransformer
from search_spaces.presets import PLUGIN_PRESETS
from search_spaces.shufflenetv2 import ShuffleNetV2Config

# torchvision's published figures for its ImageNet weights (1000 classes, 224x224):
#   https://pytorch.org/vision/stable/models/generated/torchvision.models.mobilenet_v2.html
#     MobileNet_V2_Weights.IMAGENET1K_V1: num_params 3504872, GFLOPS 0.30 ("_ops": 0.301 in
#     torchvision/models/mobilenetv2.py)
#   https://pytorch.org/vision/main/models/generated/torchvision.models.shufflenet_v2_x1_0.html
#     ShuffleNet_V2_X1_0_Weights.IMAGENET1K_V1: num_params 2278604, "_ops": 0.145 in
#     torchvision/models/shufflenetv2.py
# torchvision's "GFLOPS" count one per multiply-add (ResNet-50 is listed at 4.09), i.e. our MACs.
TORCHVISION_PARAMS = {"mobilenetv2": 3_504_872, "shufflenetv2": 2_278_604}
TORCHVISION_GMACS = {"mobilenetv2": 0.301, "shufflenetv2": 0.145}
# blocks that get a transformer: MobileNetV2's 1 + 2 + 3 + 4 + 3 + 3 + 1 inverted residuals,
# ShuffleNetV2's 4 + 8 + 4 shuffle units
BLOCKS = {"mobilenetv2": 17, "shufflenetv2": 16}
SMALL = (3, 37, 53)  # odd sides: every stride-2 layer rounds up
FAMILIES = sorted(BLOCKS)
TASKS = ["classification", "segmentation"]


def _build(family: str, task: str, transformer: bool, **overrides):
    name = family + ("_psp" if task == "segmentation" else "") + ("_transformer" if transformer else "")
    config = PLUGIN_PRESETS[name]
    assert config.task == task and (config.tokens > 0) == transformer
    return config.replace(**overrides).build().eval()


@pytest.mark.parametrize("family", FAMILIES)
def test_parameter_counts_equal_torchvision(family):
    net = _build(family, "classification", transformer=False)
    assert parameter_count(net) == TORCHVISION_PARAMS[family]
    assert net.cost().params == TORCHVISION_PARAMS[family]


def test_module_names_follow_torchvision():
    # a few state-dict keys of torchvision's models and their shapes, read off its source
    mobilenet = _build("mobilenetv2", "classification", transformer=False).state_dict()
    assert mobilenet["features.0.0.weight"].shape == (32, 3, 3, 3)
    assert mobilenet["features.1.conv.0.0.weight"].shape == (32, 1, 3, 3)  # t = 1: depthwise first
    assert mobilenet["features.1.conv.1.weight"].shape == (16, 32, 1, 1)
    assert mobilenet["features.2.conv.0.0.weight"].shape == (96, 16, 1, 1)  # t = 6: 1x1 expansion first
    assert mobilenet["features.18.0.weight"].shape == (1280, 320, 1, 1)
    assert mobilenet["classifier.1.weight"].shape == (1000, 1280)
    shufflenet = _build("shufflenetv2", "classification", transformer=False).state_dict()
    assert shufflenet["conv1.0.weight"].shape == (24, 3, 3, 3)
    assert shufflenet["stage2.0.branch1.0.weight"].shape == (24, 1, 3, 3)
    assert shufflenet["stage2.0.branch2.0.weight"].shape == (58, 24, 1, 1)
    assert shufflenet["stage3.7.branch2.5.weight"].shape == (116, 116, 1, 1)
    assert shufflenet["conv5.0.weight"].shape == (1024, 464, 1, 1)
    assert shufflenet["fc.weight"].shape == (1000, 1024)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("family", FAMILIES)
def test_plugin_adds_exactly_the_transformers(family, task):
    plain = _build(family, task, transformer=False, input_size=SMALL)
    plugged = _build(family, task, transformer=True, input_size=SMALL)
    transformers = [m for m in plugged.modules() if isinstance(m, LightweightTransformer)]
    assert len(transformers) == BLOCKS[family]
    for block in plugged.blocks():  # beside each block: its input, its output's shape
        t = block.transformer
        assert (t.in_channels, t.out_channels, t.stride) == (
            block.in_channels,
            block.out_channels,
            block.stride,
        )
    # parameters: the plain network's, layer for layer, plus the transformers' own
    added = sum(parameter_count(t) for t in transformers)
    assert parameter_count(plugged) - parameter_count(plain) == added
    rest = {k: v.shape for k, v in plugged.state_dict().items() if ".transformer." not in k}
    assert rest == {k: v.shape for k, v in plain.state_dict().items()}
    # MACs: what the transformers add, counted by torch, is what the cost model predicts for them
    x = torch.randn(1, *SMALL)
    counted = torch_counted_macs(plugged, x) - torch_counted_macs(plain, x)
    parts = plugged.cost_breakdown(SMALL)
    assert counted == sum(cost.macs for name, cost in parts.items() if name.endswith(".transformer"))
    assert plugged.cost(SMALL).params - plain.cost(SMALL).params == added


@pytest.mark.parametrize("transformer", [False, True])
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("family", FAMILIES)
def test_cost_matches_independent_counter(family, task, transformer):
    net = _build(family, task, transformer, input_size=SMALL)
    predicted = net.cost()
    assert predicted.macs == torch_counted_macs(net, torch.randn(1, *SMALL))
    assert predicted.params == parameter_count(net)
    assert sum(net.cost_breakdown().values(), type(predicted)()) == predicted


@pytest.mark.parametrize("family", FAMILIES)
def test_macs_at_224_match_torchvision_published(family):
    net = _build(family, "classification", transformer=False)
    macs = net.cost((3, 224, 224)).macs
    assert macs == torch_counted_macs(net, torch.randn(1, 3, 224, 224))
    assert round(macs / 1e9, 3) == TORCHVISION_GMACS[family]


@pytest.mark.parametrize("transformer", [False, True])
@pytest.mark.parametrize("family", FAMILIES)
def test_forward_shapes_at_odd_sizes(family, transformer):
    for task in TASKS:
        net = _build(family, task, transformer, num_outputs=5).train()
        for height, width in [(37, 53), (31, 8), (1, 1)]:
            out = net(torch.randn(2, 3, height, width))
            assert out.shape == ((2, 5) if task == "classification" else (2, 5, height, width))
            assert net.cost((3, height, width)).macs > 0


def _one_line_error(kind, call, match):
    with pytest.raises(kind, match=match) as info:
        call()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("family", FAMILIES)
def test_bad_input_is_one_clear_line(family):
    net = _build(family, "segmentation", transformer=False)
    name = {"mobilenetv2": "MobileNetV2", "shufflenetv2": "ShuffleNetV2"}[family]
    _one_line_error(
        ValueError,
        lambda: net(torch.randn(1, 1, 32, 32)),
        rf"{name} takes images \(B, 3, H, W\); got .*\(1, 1, 32, 32\)",
    )
    _one_line_error(ValueError, lambda: net(torch.randn(3, 32, 32)), r"takes images \(B, 3, H, W\)")
    _one_line_error(ConfigError, lambda: net.cost((1, 224, 224)), "takes 3 input channels")
    _one_line_error(ConfigError, lambda: net.cost((3, 0, 224)), "three positive integers")
    # training on one image: the PSP head's 1x1 bin, or a 1x1 last map, would give a BatchNorm one value
    net.train()
    _one_line_error(
        ValueError, lambda: net(torch.randn(1, 3, 64, 64)), rf"{name}: a batch of 1 cannot train.*batch of 2"
    )
    classifier = _build(family, "classification", transformer=False, num_outputs=5).train()
    assert classifier(torch.randn(1, 3, 64, 64)).shape == (1, 5)  # a 2x2 last map trains
    _one_line_error(ValueError, lambda: classifier(torch.randn(1, 3, 32, 32)), "a batch of 1 cannot train")


def test_bad_config_is_one_clear_line():
    _one_line_error(
        ConfigError,
        lambda: MobileNetV2Config(task="keypoints"),
        "task.*allowed: classification, segmentation",
    )
    _one_line_error(ConfigError, lambda: ShuffleNetV2Config(tokens=-1), "tokens.*integer >= 0")
    _one_line_error(ConfigError, lambda: ShuffleNetV2Config(stage_channels=(24, 115, 232, 464, 1024)), "even")
    _one_line_error(
        ConfigError,
        lambda: PLUGIN_PRESETS["mobilenetv2"].replace(widht_mult=2.0),
        "widht_mult.*unknown field; known fields: .*width_mult",
    )
    _one_line_error(
        ConfigError,
        lambda: MobileNetV2Config(transformer={"size": 8, "heads": 3}),
        "divisible by transformer.heads",
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_hrnas_flops_reports_the_published_figures(family, capsys):
    from nni_hrnas.cli import main

    assert main(["flops", "--preset", family, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["params"] == TORCHVISION_PARAMS[family]
    assert report["macs"] / 1e9 == pytest.approx(TORCHVISION_GMACS[family], abs=0.0005)
    assert sum(group["params"] for group in report["groups"].values()) == report["params"]
