"""A Lightning ``Callback`` that meters training with the frugalml meter, right under DDP.

Who reads what (frugalml's rule, one reader per counter): on every host the process of
local rank 0 opens the one :class:`frugalml.meter.Meter` of that host; it reads the host's
RAPL zones and every GPU it can see, or, where nothing can be read, estimates the process
tree of the whole host's training (Lightning's own DDP launcher starts the other local
ranks as its children; under ``torchrun`` the tree of the launching agent, its parent, is
followed). Other ranks read nothing, so no counter is counted twice.

Windows: the whole fit (``train``), each training epoch (``epoch N``, validation inside it
included) and each validation run (``validation``; the sanity check is not metered). At the
end of each, every rank takes part in one ``all_gather_object`` of the hosts' measurements;
global rank 0 combines them once (one host: its measurement as it is; several: components
prefixed with the host, energies and CO2 summed) and logs ``epoch_energy_j``,
``epoch_co2_g``, ``epoch_duration_s`` (``val_*`` for validation, ``train_*`` with kWh and the
measured/estimated split at the end) through the Trainer's loggers, with the provenance as
hyperparameters (``energy_provenance``, ``energy_source``). The combined training window is
written as ``frugalml_measurement.json`` in ``default_root_dir`` (or ``path``).

``on_exception``: no collective (other ranks may be gone); each host's rank 0 ends its open
windows with the error and writes what it measured (``frugalml_measurement.json`` on global
rank 0, ``frugalml_measurement.node<N>.json`` on other hosts).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from frugalml.integrations._extras import require
from frugalml.integrations._fields import metric_fields, provenance_fields
from frugalml.meter import Measurement, Meter, MeterConfig, Window

pl: Any = require("lightning.pytorch", "lightning")
_Callback: Any = pl.Callback

__all__ = ["MEASUREMENT_FILENAME", "FrugalLightningCallback", "combine_hosts"]

logger = logging.getLogger(__name__)

MEASUREMENT_FILENAME = "frugalml_measurement.json"
_SHORT = ("energy_j", "co2_g", "duration_s")


def combine_hosts(name: str, parts: Sequence[tuple[str, Measurement]]) -> Measurement:
    """One measurement from each host's: a single host's as it is (renamed); several summed,
    each component prefixed with its host (``node1/cpu:0``)."""
    if not parts:
        raise ValueError("no host measurements to combine")
    if len(parts) == 1:
        return dataclasses.replace(parts[0][1], name=name)
    first = parts[0][1]
    components = tuple(
        dataclasses.replace(c, component=f"{host}/{c.component}")
        for host, m in parts
        for c in m.components
    )
    notes = [f"{len(parts)} hosts combined: energy, CO2 and CPU time summed, peaks summed"]
    if len({m.intensity_g_per_kwh for _, m in parts}) > 1:
        notes.append("hosts used different carbon intensities; co2_g sums each host's own")
    rss = [m.peak_rss_bytes for _, m in parts if m.peak_rss_bytes is not None]
    gpu = [m.peak_gpu_mem_bytes for _, m in parts if m.peak_gpu_mem_bytes is not None]
    return Measurement(
        name=name,
        started_at=min(m.started_at for _, m in parts),
        duration_s=max(m.duration_s for _, m in parts),
        cpu_time_s=sum(m.cpu_time_s for _, m in parts),
        energy_j=sum(c.energy_j for c in components),
        components=components,
        co2_g=sum(m.co2_g for _, m in parts),
        intensity_g_per_kwh=first.intensity_g_per_kwh,
        intensity_source=first.intensity_source,
        pue=first.pue,
        peak_rss_bytes=sum(rss) if rss else None,
        peak_gpu_mem_bytes=sum(gpu) if gpu else None,
        devices=tuple(f"{host}/{d}" for host, m in parts for d in m.devices),
        error="; ".join(m.error for _, m in parts if m.error) or None,
        notes=tuple(notes) + tuple(n for _, m in parts for n in m.notes),
    )


class FrugalLightningCallback(_Callback):  # type: ignore[misc]
    """Meter a Lightning fit (see the module docstring)."""

    def __init__(self, config: MeterConfig | None = None, *, path: str | Path | None = None):
        super().__init__()
        self.config = config or MeterConfig()
        self.path = None if path is None else Path(path)
        self.meter: Meter | None = None
        self._windows: dict[str, Window] = {}
        self.logged: list[dict[str, float]] = []  # what global rank 0 logged, in order
        self.total: Measurement | None = None
        self.written: Path | None = None

    # -- ranks -----------------------------------------------------------------------------
    def _host_config(self) -> MeterConfig:
        if "TORCHELASTIC_RUN_ID" in os.environ and self.config.pid is None:
            return dataclasses.replace(self.config, pid=os.getppid())  # torchrun's agent
        return self.config

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage == "fit" and trainer.local_rank == 0 and self.meter is None:
            self.meter = Meter(self._host_config()).start()

    def _begin(self, trainer: Any, name: str) -> None:
        if self.meter is not None and name not in self._windows:
            self._windows[name] = self.meter.begin(
                f"epoch {trainer.current_epoch}" if name == "epoch" else name
            )

    def _end(self, name: str, error: str | None = None) -> Measurement | None:
        window = self._windows.pop(name, None)
        if window is None or self.meter is None:
            return None
        return self.meter.end(window, error=error)

    def _gather(self, trainer: Any, mine: Measurement | None, name: str) -> Measurement | None:
        """Every rank calls this at the same point; global rank 0 gets the combination."""
        payload = None if mine is None else (f"node{trainer.node_rank}", mine.to_dict())
        gathered: list[Any] = [payload]
        if trainer.world_size > 1:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                gathered = [None] * dist.get_world_size()
                dist.all_gather_object(gathered, payload)
        if trainer.global_rank != 0:
            return None
        parts = [(host, Measurement.from_dict(d)) for host, d in (p for p in gathered if p)]
        return combine_hosts(name, parts) if parts else None

    def _log(self, trainer: Any, metrics: dict[str, float]) -> None:
        self.logged.append(metrics)
        for lg in trainer.loggers:
            lg.log_metrics(metrics, step=trainer.global_step)

    # -- events ----------------------------------------------------------------------------
    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._begin(trainer, "train")

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._begin(trainer, "epoch")

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        combined = self._gather(trainer, self._end("epoch"), f"epoch {trainer.current_epoch}")
        if combined is not None:
            self._log(trainer, _short(combined, "epoch_"))

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.sanity_checking:
            self._begin(trainer, "validation")

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        combined = self._gather(trainer, self._end("validation"), "validation")
        if combined is not None:
            self._log(trainer, _short(combined, "val_"))

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        combined = self._gather(trainer, self._end("train"), "train")
        if combined is not None:
            self.total = combined
            self._log(trainer, metric_fields(combined, "train_"))
            for lg in trainer.loggers:
                lg.log_hyperparams(provenance_fields(combined))
            self._write(trainer, combined, MEASUREMENT_FILENAME)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        if self.meter is None:
            return
        error = f"{type(exception).__name__}: {exception}"
        for name in ("validation", "epoch"):
            self._end(name, error)
        mine = self._end("train", error)
        if mine is not None:
            self.total = mine
            filename = (
                MEASUREMENT_FILENAME
                if trainer.global_rank == 0
                else f"frugalml_measurement.node{trainer.node_rank}.json"
            )
            self._write(trainer, mine, filename)

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage == "fit" and self.meter is not None:
            self.meter.close()
            self.meter = None

    def _write(self, trainer: Any, m: Measurement, filename: str) -> None:
        target = self.path if self.path and filename == MEASUREMENT_FILENAME else None
        target = target or Path(trainer.default_root_dir) / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(m.to_json() + "\n", encoding="utf-8")
        self.written = target
        logger.info("frugalml measurement written to %s (host %s)", target, socket.gethostname())


def _short(m: Measurement, prefix: str) -> dict[str, float]:
    fields = metric_fields(m, prefix)
    return {f"{prefix}{k}": fields[f"{prefix}{k}"] for k in _SHORT}
