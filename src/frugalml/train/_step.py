"""The training step, its batches and the input normalisation, written once.

:func:`frugalml.train.train`, the per-layer profile (:mod:`frugalml.profile`), its step
timing and the study estimate (:mod:`frugalml.study._estimate`) all train with these: Adam
(:func:`make_optimizer`), cross-entropy (:class:`TrainStep`, with bf16 autocast when asked),
inputs ``(x / 255 - mean) / std`` per channel (:func:`channel_stats`, :class:`Normaliser`),
batches drawn from a seeded permutation (:class:`BatchOrder`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from frugalml.data import ImageDataset
    from frugalml.train._config import TrainConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def channel_stats(
    dataset: ImageDataset, mode: str = "dataset", pretrained: bool = False
) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (in [0, 1] units) for ``mode``: ``dataset`` (the training
    split's), ``imagenet``, ``none`` (0 and 1), ``auto`` (imagenet when pretrained)."""
    if mode == "auto":
        mode = "imagenet" if pretrained else "dataset"
    channels = dataset.channels
    if mode == "none":
        return [0.0] * channels, [1.0] * channels
    if mode == "imagenet":
        if channels == 3:
            return list(IMAGENET_MEAN), list(IMAGENET_STD)
        # timm folds a 3-channel first conv into fewer channels by summing: use the mean stats.
        return [float(np.mean(IMAGENET_MEAN))] * channels, [float(np.mean(IMAGENET_STD))] * channels
    images = dataset.train.images
    mean = images.mean(axis=(0, 2, 3), dtype=np.float64) / 255.0
    std = images.std(axis=(0, 2, 3), dtype=np.float64) / 255.0
    return [float(m) for m in mean], [float(max(s, 1e-6)) for s in std]


class Normaliser:
    """Turns uint8 image batches into normalised float32 batches on ``device``."""

    def __init__(
        self,
        mean: list[float],
        std: list[float],
        device: torch.device,
        channels_last: bool = False,
    ) -> None:
        import torch

        shape = (1, len(mean), 1, 1)
        self.channels_last = channels_last
        mean_t = torch.tensor(mean, device=device).view(shape)
        self.scale = (1.0 / (255.0 * torch.tensor(std, device=device))).view(shape)
        self.mean_255 = mean_t * 255.0

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        import torch

        x = (images.to(torch.float32) - self.mean_255) * self.scale
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


class BatchOrder:
    """Seeded batch order: one permutation per epoch; a final batch of one is dropped
    (BatchNorm cannot train on a single sample)."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n = n
        self.batch_size = batch_size
        self.seed = seed

    def order(self, epoch: int) -> list[torch.Tensor]:
        import torch

        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        permutation = torch.randperm(self.n, generator=generator)
        batches = list(torch.split(permutation, self.batch_size))
        if len(batches) > 1 and len(batches[-1]) == 1:
            batches.pop()
        return batches


def make_optimizer(
    parameters: Iterable[torch.nn.Parameter],
    config: TrainConfig | None = None,
    *,
    lr: float | None = None,
    foreach: bool | None = None,
) -> torch.optim.Optimizer:
    """Adam with ``config``'s learning rate, betas and weight decay (``lr`` overrides the
    rate). ``foreach=None`` lets torch pick the implementation: multi-tensor on CUDA, a
    plain loop on CPU."""
    import torch

    from frugalml.train._config import TrainConfig

    config = config or TrainConfig()
    return torch.optim.Adam(
        parameters,
        lr=config.lr if lr is None else lr,
        betas=config.betas,
        weight_decay=config.weight_decay,
        foreach=foreach,
    )


def autocast_for(device: torch.device, bf16: bool) -> Callable[[], Any]:
    """A factory of the autocast context a step runs in (bf16, or none)."""
    import torch

    if bf16:
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


class TrainStep:
    """One optimisation step: forward, cross-entropy (``loss_fn``) plus
    ``regulariser(model)``, zero_grad, backward, the optimizer's step, then
    ``on_step(model)``. Returns the loss (detached)."""

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        autocast: Callable[[], Any] = contextlib.nullcontext,
        regulariser: Callable[[torch.nn.Module], torch.Tensor] | None = None,
        on_step: Callable[[torch.nn.Module], None] | None = None,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        import torch

        self.model = model
        self.optimizer = optimizer
        self.loss_fn = loss_fn or torch.nn.CrossEntropyLoss()
        self.autocast = autocast
        self.regulariser = regulariser
        self.on_step = on_step

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            loss = self.loss_fn(self.model(x), y)
            if self.regulariser is not None:
                loss = loss + self.regulariser(self.model)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.on_step is not None:
            self.on_step(self.model)
        return loss.detach()
