"""Small conv nets with the model contracts of the tasks, until the search space lands."""

import torch
import torch.nn as nn
import torch.nn.functional as F


def cbr(i, o, s=1):
    return nn.Sequential(nn.Conv2d(i, o, 3, s, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True))


class TinySeg(nn.Module):
    """(B, C, H, W) -> (B, n, H/4, W/4), two resolutions fused as in HRNet."""

    def __init__(self, in_channels=1, num_outputs=11, width=16):
        super().__init__()
        self.stem = nn.Sequential(cbr(in_channels, width, 2), cbr(width, width, 2), cbr(width, width))
        self.low = nn.Sequential(cbr(width, 2 * width, 2), cbr(2 * width, 2 * width))
        self.head = nn.Sequential(cbr(3 * width, width), nn.Conv2d(width, num_outputs, 1))

    def forward(self, x):
        a = self.stem(x)
        b = F.interpolate(self.low(a), size=a.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(torch.cat([a, b], 1))


class TinyCls(nn.Module):
    def __init__(self, in_channels=1, num_outputs=10, width=16):
        super().__init__()
        self.body = nn.Sequential(
            cbr(in_channels, width, 2), cbr(width, 2 * width, 2), nn.AdaptiveAvgPool2d(1)
        )
        self.fc = nn.Linear(2 * width, num_outputs)

    def forward(self, x):
        return self.fc(self.body(x).flatten(1))
