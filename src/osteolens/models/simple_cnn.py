"""``simple_cnn``: the bone-age seed's small tunable network, registered like any backbone.

``conv_layers`` blocks of ``conv 3x3 -> batch norm -> ReLU -> max pool 2x2``; block ``i``
has ``filters * 2**i`` channels. The trunk ends with global average pooling (so any input
size works, unlike the seed's flatten) and one dense layer of ``dense_units`` with ReLU.
The seed's dense depth and dropout live in the shared head: pass
``head_hidden=[dense_units] * depth`` and ``dropout`` to :func:`osteolens.models.create_model`.
The seed searched conv_layers {3, 4, 5}, filters {8, 16, 32}, depth {1, 2, 3},
dropout {0.1, 0.2, 0.3}.
"""

from __future__ import annotations

import torch
from torch import nn

from osteolens.errors import ModelError
from osteolens.models.registry import Backbone, register_model


class SimpleCNN(nn.Module):
    """Conv trunk + global average pool + dense layer; outputs ``[N, dense_units]``."""

    def __init__(self, in_chans: int = 1, conv_layers: int = 3, filters: int = 16, dense_units: int = 256) -> None:
        super().__init__()
        if conv_layers < 1 or filters < 1 or dense_units < 1:
            raise ModelError(
                f"simple_cnn: conv_layers ({conv_layers}), filters ({filters}) and dense_units ({dense_units}) "
                "must all be positive."
            )
        blocks = []
        channels = in_chans
        for i in range(conv_layers):
            out = filters * 2**i
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(channels, out, kernel_size=3, padding=1, bias=False),
                    nn.BatchNorm2d(out),
                    nn.ReLU(),
                    nn.MaxPool2d(2),
                )
            )
            channels = out
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dense = nn.Sequential(nn.Flatten(), nn.Linear(channels, dense_units), nn.ReLU())
        self.num_features = dense_units

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The final feature map ``[N, C', H', W']`` (timm's name for it)."""
        return self.blocks(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Global average pool + dense layer: ``[N, C', H', W'] -> [N, dense_units]``."""
        return self.dense(self.pool(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, C, H, W] -> [N, dense_units]``."""
        return self.forward_head(self.forward_features(x))


@register_model("simple_cnn")
def simple_cnn(in_chans: int = 1, conv_layers: int = 3, filters: int = 16, dense_units: int = 256) -> Backbone:
    """Build the bone-age seed's CNN trunk (see the module docstring)."""
    net = SimpleCNN(in_chans, conv_layers, filters, dense_units)
    stages = [f"blocks.{i}" for i in range(conv_layers)]
    return Backbone(net, dense_units, stages)
