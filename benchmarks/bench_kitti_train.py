"""kitti_sim: plain training of one detection network, moderate AP and a class-score probe per epoch.

    OMP_NUM_THREADS=2 python benchmarks/bench_kitti_train.py --model rpn [--epochs 8] [--rotation 0.157]
    OMP_NUM_THREADS=2 python benchmarks/bench_kitti_train.py --model supernet --space '{"transformer": false}'
    OMP_NUM_THREADS=2 python benchmarks/bench_kitti_train.py --model plain --width 64 --no-augmentation

Models: ``rpn`` (PointPillars' CPU-sized RPN, stride 2), ``rpn-slim`` (the same at half its
widths, 173.5 M MACs: a hand-slimmed network below the ``kitti_sim`` supernet's 215.9 M),
``rpn-stride4`` (its features average-pooled to stride 4 before the classifier, where the
supernet's anchors were before they moved to stride 2), ``supernet`` (the ``kitti_sim`` HR-NAS supernet,
``--space`` overrides as ``hrnas search --space``), ``plain`` (the pillar front end, two stride-2 3x3
convolutions as the supernet's stem and three 3x3 convolutions at ``--width``). Each epoch prints one
JSON line: mean class / box / direction loss, the mean class probability of the positive and the
negative anchors of the first validation batch (eval mode), and moderate AP (R40, 3D and BEV).
The README's KITTI section quotes these lines (default 160 / 48 scenes, seed 0).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nni_hrnas.detection.anchors import assign, detection_loss, make_anchors, split_outputs
from nni_hrnas.tasks import get_task
from search_spaces.ops.pillars import SIM_PILLARS, PillarFrontEnd, init_class_prior
from search_spaces.pointpillars import RPN_PRESETS, PointPillarsRPN

#: ``pointpillars_sim`` at half its widths: the hand-slimmed alternative at the supernet's MACs
SLIM_RPN = dataclasses.replace(
    RPN_PRESETS["pointpillars_sim"], channels=(16, 32, 64), up_channels=(32, 32, 32)
)


class PlainNet(nn.Module):
    """Front end, a two-convolution stride-4 stem and three 3x3 convolutions at ``width``."""

    def __init__(self, width: int, outputs: int) -> None:
        super().__init__()

        def conv(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

        self.frontend = PillarFrontEnd(SIM_PILLARS)
        layers = conv(SIM_PILLARS.channels, width, 2) + conv(width, width, 2)
        for _ in range(3):
            layers += conv(width, width, 1)
        self.body = nn.Sequential(*layers)
        self.classifier = init_class_prior(nn.Conv2d(width, outputs, 1))

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.body(self.frontend(packed)))


class RPNStride4(PointPillarsRPN):
    """The RPN with its concatenated features average-pooled to stride 4 before the classifier."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(F.avg_pool2d(self.features(x), 2))


def build(args: argparse.Namespace, outputs: int) -> nn.Module:
    if args.model == "rpn":
        return PointPillarsRPN(RPN_PRESETS["pointpillars_sim"])
    if args.model == "rpn-slim":
        return PointPillarsRPN(SLIM_RPN)
    if args.model == "rpn-stride4":
        return RPNStride4(RPN_PRESETS["pointpillars_sim"])
    if args.model == "plain":
        return PlainNet(args.width, outputs)
    from nni_hrnas.search import SearchSettings, build_search

    space, _, _ = build_search(SearchSettings(task="kitti_sim", space=json.loads(args.space or "null")))
    return space.freeze(space.max_sample())


@torch.no_grad()
def probe(model: nn.Module, module, batch) -> dict[str, float]:
    """Mean class probability of the positive and negative anchors of one batch (eval mode)."""
    packed, gt, _ = batch
    model.eval()
    out = model(packed)
    cls, _, _ = split_outputs(out, module.anchors.per_location)
    anchors = make_anchors(module.anchors, module.pillars, out.shape[2], out.shape[3])
    labels = torch.stack([assign(anchors, g[g[:, 0] > 0, 1:], module.anchors)[0] for g in gt])
    p = torch.sigmoid(cls)
    return {"p_pos": round(float(p[labels == 1].mean()), 4), "p_neg": round(float(p[labels == 0].mean()), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", choices=("rpn", "rpn-slim", "rpn-stride4", "supernet", "plain"), default="rpn"
    )
    parser.add_argument("--space", help="supernet: --space overrides as JSON")
    parser.add_argument("--width", type=int, default=16, help="plain: channels at stride 4")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument(
        "--lr", type=float, help="peak learning rate (default: the task's plain training rate)"
    )
    parser.add_argument("--rotation", type=float, help="global rotation range (default: the task's)")
    parser.add_argument("--no-augmentation", action="store_true")
    parser.add_argument("--anchors", help="AnchorSettings overrides as JSON, e.g. '{\"positive_iou\": 0.5}'")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from bench_kitti_sim import evaluate  # the same evaluation as the search benchmark (beside this file)

    torch.manual_seed(args.seed)
    spec = get_task("kitti_sim")
    train, val = spec.make_datasets(None, smoke=False, seed=args.seed)
    if args.no_augmentation:
        train.augmentation = None
    elif args.rotation is not None:
        train.augmentation = dataclasses.replace(train.augmentation, rotation=args.rotation)
    anchors = {**spec.module_args.get("anchors", {}), **json.loads(args.anchors or "{}")}
    module = spec.make_lightning_module(anchors=anchors)
    module.val_frames = val
    loader = torch.utils.data.DataLoader(train, batch_size=4, shuffle=True, drop_last=True)
    val_loader = torch.utils.data.DataLoader(val, batch_size=8)
    model = build(args, module.anchors.num_outputs)
    module.set_model(model)
    lr = args.lr or spec.train.module_kwargs["learning_rate"]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=args.epochs * len(loader))
    first_val = next(iter(val_loader))
    for epoch in range(args.epochs):
        started, losses = time.perf_counter(), []
        model.train()
        for packed, gt, _ in loader:
            loss = detection_loss(model(packed), gt, module.anchors, module.pillars)
            opt.zero_grad()
            loss["loss"].backward()
            opt.step()
            schedule.step()
            losses.append([float(loss[k]) for k in ("cls", "box", "dir")])
        seconds = time.perf_counter() - started
        line = {"epoch": epoch + 1, "seconds": round(seconds, 1)}
        line["loss_cls_box_dir"] = np.round(np.mean(losses, 0), 3).tolist()
        line.update(probe(model, module, first_val))
        line.update({k: round(v, 2) for k, v in evaluate(module, model, val_loader).items()})
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
