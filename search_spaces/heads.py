"""Task heads of the HR-NAS network: each head builds, runs and costs itself.

A head is chosen once from the config's ``task`` (:data:`HEADS`, :func:`task_head`); the network
asks it for its searching blocks (they join the space's choices), its own layers (registered on the
network under the names the head gives, so state-dict keys are ``classifier.weight`` and so on,
not nested under the head), its forward pass over the last module's branch outputs, and the cost
of everything in it but the searching blocks (those are costed with the rest of the space's blocks).

* :class:`DenseHead` (segmentation, keypoints): every branch upsampled to 1/4 and concatenated,
  one searching block ``head``, ReLU, a 1x1 convolution to ``num_outputs`` maps.
* :class:`DetectionHead`: the dense head, its features upsampled to 1/2 of the pseudo-image by a
  transposed convolution (BN, ReLU) before the 1x1 convolution, so that its anchors lie at
  PointPillars' stride 2; the detection task reads the maps as anchor predictions. The only head
  fed by the PointPillars front end.
* :class:`ClassificationHead`: the HRNet-style head: one searching block per branch (``cls_b{b}``),
  strided searching blocks (``cls_d{i}``) summing the branches from fine to coarse, a 1x1
  convolution to ``cls_final_channels``, global average pooling, dropout and a linear classifier.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from . import costs, labels
from .errors import ConfigError, check_positive
from .layouts import head_input_channels
from .ops.pillars import init_class_prior

if TYPE_CHECKING:  # annotations only: config.py imports this module to validate and pick heads
    from .config import HRNASConfig


class HeadBlock(NamedTuple):
    """A searching block of a head: label, channels in and out, stride, input stride (w.r.t. the image)."""

    label: str
    in_channels: int
    out_channels: int
    stride: int
    input_stride: int


@dataclass(frozen=True)
class TaskHead:
    """What every head does; subclasses fill it in for one kind of output.

    Args:
        config: the space's configuration (the head reads its own fields and the last module's branches).
    """

    config: HRNASConfig
    #: whether a PointPillars front end may feed the network this head ends (``config.pillars``)
    takes_pillars: ClassVar[bool] = False

    @property
    def branch_channels(self) -> tuple[int, ...]:
        """Channels of the features the head receives, finest first (one per resolution): the last
        parallel module's branches, or the single branch's features (see :mod:`search_spaces.layouts`)."""
        return head_input_channels(self.config)

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid field this head reads (none by default)."""

    def blocks(self) -> list[HeadBlock]:
        """The head's searching blocks, in construction order."""
        raise NotImplementedError

    def layers(self) -> dict[str, nn.Module]:
        """The head's own (unsearched) layers, by the attribute name the network registers each under."""
        raise NotImplementedError

    def forward(self, net: nn.Module, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """The head's output from the branch outputs ``feats`` (finest first); ``net`` holds the head's
        searching blocks (``net.blocks``) and its :meth:`layers`."""
        raise NotImplementedError

    def cost(self, height: int, width: int) -> costs.Cost:
        """Exact per-image cost of the head outside its searching blocks, for an input of ``height`` x ``width``."""
        raise NotImplementedError

    def output(self, height: int, width: int) -> dict[str, Any]:
        """The network's output for an input of ``height`` x ``width``: its ``shape`` (``'B'`` the batch)
        and what it means (``meaning``, for a deployed model's card)."""
        raise NotImplementedError


class DenseHead(TaskHead):
    """Dense prediction at 1/4 (segmentation maps, keypoint heatmaps): see the module docstring."""

    #: the stride of the output maps w.r.t. the input
    output_stride: ClassVar[int] = 4

    #: What the maps are, by task kind: the one thing segmentation and keypoints differ in here.
    MEANING: ClassVar[dict[str, str]] = {
        "segmentation": "per-pixel class logits ({n} classes) at 1/4 of the input size; "
        "resize bilinearly to the input size, then argmax over classes",
        "keypoints": "one heatmap per keypoint ({n}) at 1/4 of the input size; the peak is the keypoint",
        "detection": "anchor predictions ({n} maps: per anchor a score, 7 box values and 2 direction "
        "logits) at 1/2 of the pillar grid",
    }

    def blocks(self) -> list[HeadBlock]:
        """One searching block over the concatenated branches: ``head``."""
        return [HeadBlock(labels.HEAD, sum(self.branch_channels), self.config.head_channels, 1, 4)]

    def layers(self) -> dict[str, nn.Module]:
        """The 1x1 convolution to the outputs: ``classifier``."""
        return {"classifier": nn.Conv2d(self.config.head_channels, self.config.num_outputs, 1)}

    def features(self, net: nn.Module, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """Branches upsampled to the finest one, concatenated, the ``head`` block and ReLU (at 1/4)."""
        size = feats[0].shape[-2:]
        up = [feats[0]] + [
            F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in feats[1:]
        ]
        return net.act(net.blocks[labels.HEAD](torch.cat(up, dim=1)))

    def forward(self, net: nn.Module, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """The :meth:`features`, then the classifier."""
        return net.classifier(self.features(net, feats))

    def cost(self, height: int, width: int) -> costs.Cost:
        """The upsampling of the coarser branches and the ReLU at 1/4, the classifier at the output stride."""
        config, hw = self.config, (height // 4, width // 4)
        out_hw = (height // self.output_stride, width // self.output_stride)
        total = costs.Cost()
        for ch in self.branch_channels[1:]:
            total += costs.interpolate_cost(ch, hw)
        return (
            total
            + costs.activation_cost(config.head_channels, hw)
            + costs.conv_cost(config.head_channels, config.num_outputs, 1, out_hw, bias=True)
        )

    def output(self, height: int, width: int) -> dict[str, Any]:
        """``num_outputs`` maps at 1/``output_stride`` of the input size."""
        n, stride = self.config.num_outputs, self.output_stride
        return {
            "shape": ["B", n, height // stride, width // stride],
            "meaning": self.MEANING[self.config.task].format(n=n),
        }


class DetectionHead(DenseHead):
    """The dense head as anchor predictions (anchors x (1 + 7 + 2) maps) at 1/2 of the pseudo-image, the
    stride of PointPillars' RPN; a pillar front end may feed it.

    At 1/4 (1 m cells on the simulator's grid) a car got 1.2 positive anchors and the ``kitti_sim``
    supernet's boxes stayed loose (box loss 0.42 after 10 epochs, moderate 3D AP 0.18); upsampled to
    1/2 before the classifier, 0.34 and 2.54 (README, "3D detection").
    """

    takes_pillars: ClassVar[bool] = True
    output_stride: ClassVar[int] = 2

    def layers(self) -> dict[str, nn.Module]:
        """``upsample`` (a 2x2 transposed convolution, stride 2, BN, ReLU) and the dense head's
        classifier, its class logits started at :data:`CLASS_PRIOR`."""
        channels = self.config.head_channels
        layers = super().layers()
        init_class_prior(layers["classifier"])
        upsample = nn.Sequential(
            nn.ConvTranspose2d(channels, channels, 2, 2, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )
        return {"upsample": upsample, **layers}

    def forward(self, net: nn.Module, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """The dense head's features at 1/4, ``upsample`` to 1/2, the classifier."""
        return net.classifier(net.upsample(self.features(net, feats)))

    def cost(self, height: int, width: int) -> costs.Cost:
        """The dense head's, plus ``upsample``: each 1/4 pixel meets the 2x2 kernel once."""
        channels, half = self.config.head_channels, (height // 2, width // 2)
        upsample = costs.upsampling_conv_cost(channels, channels, 2, (height // 4, width // 4))
        return super().cost(height, width) + upsample + costs.batchnorm_cost(channels, half, act=True)


class ClassificationHead(TaskHead):
    """The HRNet-style classification head: see the module docstring."""

    def validate(self) -> None:
        """``cls_channels``: one positive width per branch of the last module; ``cls_final_channels`` positive."""
        config, last = self.config, len(self.branch_channels)
        if len(config.cls_channels) != last:
            raise ConfigError(
                "cls_channels",
                config.cls_channels,
                f"expected one width per branch of the last stage ({last})",
            )
        for i, c in enumerate(config.cls_channels):
            check_positive(f"cls_channels[{i}]", c)
        check_positive("cls_final_channels", config.cls_final_channels)

    def blocks(self) -> list[HeadBlock]:
        """``cls_b{b}`` on every branch, then the strided ``cls_d{i}`` from branch i to i + 1."""
        cls = self.config.cls_channels
        out = [
            HeadBlock(labels.cls_branch_block(b), c, cls[b], 1, 4 * 2**b)
            for b, c in enumerate(self.branch_channels)
        ]
        out += [
            HeadBlock(labels.cls_down_block(i), cls[i], cls[i + 1], 2, 4 * 2**i)
            for i in range(len(self.branch_channels) - 1)
        ]
        return out

    def layers(self) -> dict[str, nn.Module]:
        """``cls_final`` (1x1 conv, BN, ReLU), ``dropout`` and the linear ``classifier``."""
        config, final = self.config, self.config.cls_final_channels
        return {
            "cls_final": nn.Sequential(
                nn.Conv2d(config.cls_channels[-1], final, 1, bias=False),
                nn.BatchNorm2d(final),
                nn.ReLU(inplace=True),
            ),
            "dropout": nn.Dropout(config.dropout),
            "classifier": nn.Linear(final, config.num_outputs),
        }

    def forward(self, net: nn.Module, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """Branches summed from fine to coarse through the head's blocks, pooled, classified."""
        y = net.blocks[labels.cls_branch_block(0)](feats[0])
        for i in range(1, len(feats)):
            y = net.blocks[labels.cls_down_block(i - 1)](y) + net.blocks[labels.cls_branch_block(i)](feats[i])
        y = net.cls_final(y).mean((2, 3))
        return net.classifier(net.dropout(y))

    def cost(self, height: int, width: int) -> costs.Cost:
        """``cls_final`` at the coarsest branch's size and the linear classifier (pooling and dropout are free)."""
        config, stride = self.config, 4 * 2 ** (len(self.branch_channels) - 1)
        final, hw = config.cls_final_channels, (height // stride, width // stride)
        return (
            costs.conv_cost(config.cls_channels[-1], final, 1, hw)
            + costs.batchnorm_cost(final, hw, act=True)
            + costs.linear_cost(final, config.num_outputs)
        )

    def output(self, height: int, width: int) -> dict[str, Any]:
        """One logit per class."""
        n = self.config.num_outputs
        return {"shape": ["B", n], "meaning": f"class logits ({n} classes); softmax for probabilities"}


#: The head of each task kind (``HRNASConfig.task``); its keys are the allowed task kinds.
HEADS: dict[str, type[TaskHead]] = {
    "segmentation": DenseHead,
    "keypoints": DenseHead,
    "classification": ClassificationHead,
    "detection": DetectionHead,
}


def task_head(config: HRNASConfig) -> TaskHead:
    """The head of ``config``'s task (``config.task`` must be a key of :data:`HEADS`)."""
    return HEADS[config.task](config)
