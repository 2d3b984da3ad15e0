"""The torch networks behind the built-ins (imported only when one is built)."""

from __future__ import annotations

import torch
from torch import nn

from frugalml.models._builtin import FrugalCNNConfig, FrugalMLPConfig

__all__ = ["FrugalCNN", "FrugalMLP"]


def _head(
    in_features: int, config: FrugalCNNConfig | FrugalMLPConfig, num_classes: int
) -> nn.Sequential:
    layers: list[nn.Module] = []
    features = in_features
    for _ in range(config.linear_layers - 1):
        layers.append(nn.Linear(features, config.hidden))
        if config.relu:
            layers.append(nn.ReLU(inplace=True))
        if config.dropout > 0:
            layers.append(nn.Dropout(config.dropout))
        features = config.hidden
    layers.append(nn.Linear(features, num_classes))
    return nn.Sequential(*layers)


class FrugalCNN(nn.Module):
    """``frugal_cnn``: see :class:`frugalml.models.FrugalCNNConfig` for the layout."""

    def __init__(self, config: FrugalCNNConfig, *, num_classes: int, in_chans: int) -> None:
        super().__init__()
        self.config = config
        self.num_classes = num_classes
        layers: list[nn.Module] = []
        channels_in = in_chans
        for i, channels_out in enumerate(config.channels):
            layers.append(
                nn.Conv2d(
                    channels_in,
                    channels_out,
                    config.kernel_size,
                    padding=config.kernel_size // 2,
                    bias=not config.batch_norm,
                )
            )
            if config.batch_norm:
                layers.append(nn.BatchNorm2d(channels_out))
            if config.relu:
                layers.append(nn.ReLU(inplace=True))
            if i % 2 == 1 and config.pool != "none":
                pool_cls = nn.MaxPool2d if config.pool == "max" else nn.AvgPool2d
                layers.append(pool_cls(2, ceil_mode=True))
            channels_in = channels_out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(config.head_grid)
        self.head = _head(channels_in * config.head_grid**2, config, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x))
        out: torch.Tensor = self.head(torch.flatten(x, 1))
        return out


class FrugalMLP(nn.Module):
    """``frugal_mlp``: see :class:`frugalml.models.FrugalMLPConfig` for the layout."""

    def __init__(self, config: FrugalMLPConfig, *, num_classes: int, in_chans: int) -> None:
        super().__init__()
        self.config = config
        self.num_classes = num_classes
        self.pool = nn.AdaptiveAvgPool2d(config.input_grid)
        self.head = _head(in_chans * config.input_grid**2, config, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(torch.flatten(self.pool(x), 1))
        return out
