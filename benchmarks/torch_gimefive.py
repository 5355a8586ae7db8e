"""GiMeFive in PyTorch, written from the paper's table, as the reference for the throughput benchmark."""

from __future__ import annotations

import torch
from torch import nn

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _block(cin: int, cout: int, dropout: bool) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
    if dropout:
        layers.append(nn.Dropout(0.2))
    return nn.Sequential(*layers)


class TorchGiMeFive(nn.Module):
    """Five conv blocks (64..1024), global average pooling, dense 2048 -> 1024 -> classes.

    Takes gray faces ``[N, 1, H, W]`` in 0..255 and normalises them as the Keras model does.
    """

    def __init__(self, num_classes: int = 6):
        super().__init__()
        widths = (64, 128, 256, 512, 1024)
        cins = (3,) + widths[:-1]
        self.features = nn.Sequential(*[_block(i, o, k < 4) for k, (i, o) in enumerate(zip(cins, widths))])
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(1024, 2048),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(2048, 1024),
            nn.ReLU(inplace=True),
            nn.Linear(1024, num_classes),
        )
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        x = (faces / 255.0).expand(-1, 3, -1, -1)
        return self.head(self.features((x - self.mean) / self.std))
