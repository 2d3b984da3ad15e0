"""A Hugging Face ``Trainer`` callback that meters training with the frugalml meter.

``FrugalTrainerCallback().add_to(trainer)`` (or ``Trainer(callbacks=[...])``) opens one
meter window for the whole training, one per epoch and one per evaluation during training.
Their figures go into the Trainer's logs:

- at each epoch's end (the callback asks the Trainer to log there): ``epoch_energy_j``,
  ``epoch_co2_g``, ``epoch_duration_s``, ``energy_provenance``, ``energy_source``;
- with each evaluation's metrics: ``eval_energy_j``, ``eval_co2_g``, ``eval_duration_s``;
- with the final training summary: ``train_energy_j``, ``train_energy_kwh``,
  ``train_co2_g``, ``train_measured_energy_j``, ``train_estimated_energy_j``, provenance.

At the end the training window is written as ``frugalml_measurement.json`` in the Trainer's
``output_dir`` (or ``path``), readable with :meth:`frugalml.meter.Measurement.from_json`.

Where the logs go is the Trainer's ``report_to``, which defaults to ``"none"`` since
transformers 5: pass it explicitly (``report_to=["mlflow"]``, ``"tensorboard"``, ...).
Reporters run in the order of the Trainer's callbacks; :meth:`FrugalTrainerCallback.add_to`
puts this one before them, so they see its fields (with ``callbacks=[...]`` it comes after
them and only ``trainer.state.log_history`` and the console carry the fields).

In a distributed run the process of local rank 0 meters (the host's counters and the GPUs
it can see, one reader per host); the other processes read nothing. Each host writes its
own JSON; figures are not summed across hosts here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from frugalml.integrations._extras import require
from frugalml.integrations._fields import metric_fields, provenance_fields
from frugalml.meter import Measurement, Meter, MeterConfig, Window

transformers: Any = require("transformers", "hf")
_TrainerCallback: Any = transformers.TrainerCallback

__all__ = ["MEASUREMENT_FILENAME", "FrugalTrainerCallback"]

logger = logging.getLogger(__name__)

MEASUREMENT_FILENAME = "frugalml_measurement.json"
_SHORT = ("energy_j", "co2_g", "duration_s")


class FrugalTrainerCallback(_TrainerCallback):  # type: ignore[misc]
    """Meter a Hugging Face training (see the module docstring)."""

    def __init__(
        self,
        config: MeterConfig | None = None,
        *,
        path: str | Path | None = None,
        meter: Meter | None = None,
    ) -> None:
        self.config = config or MeterConfig()
        self.path = None if path is None else Path(path)
        self._given_meter = meter
        self.meter: Meter | None = None
        self._train: Window | None = None
        self._epoch: Window | None = None
        self._eval: Window | None = None
        self._pending: dict[str, Any] = {}
        self.total: Measurement | None = None
        self.written: Path | None = None

    def add_to(self, trainer: Any) -> FrugalTrainerCallback:
        """Add this callback to ``trainer`` before its reporters (after its flow callback)."""
        callbacks = trainer.callback_handler.callbacks
        flow = [
            i for i, c in enumerate(callbacks) if isinstance(c, transformers.DefaultFlowCallback)
        ]
        callbacks.insert(flow[0] + 1 if flow else 0, self)
        return self

    @property
    def measurements(self) -> tuple[Measurement, ...]:
        """Every window this callback measured (epochs, evaluations, the training)."""
        return () if self.meter is None else self.meter.measurements

    # -- events ----------------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_local_process_zero:
            return
        self.meter = self._given_meter or Meter(self.config)
        self.meter.start()
        self._train = self.meter.begin("train")

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.meter is not None and self._epoch is None:
            self._epoch = self.meter.begin(f"epoch {int(state.epoch or 0)}")

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if self.meter is not None and self._epoch is not None:
            m = self.meter.end(self._epoch)
            self._epoch = None
            self._pending.update(_short(m, "epoch_"))
            self._pending.update(provenance_fields(m))
            control.should_log = True
        self._maybe_open_eval(control)
        return control

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._maybe_open_eval(control)

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any
    ) -> None:
        if logs is None or self.meter is None:
            return
        extra: dict[str, Any] = {}
        if self._eval is not None and any(str(k).startswith("eval_") for k in logs):
            extra.update(_short(self._end_eval(), "eval_"))
        if "train_runtime" in logs and self._train is not None:
            total = self._end_train()
            extra.update(metric_fields(total, "train_"))
            extra.update(provenance_fields(total))
        elif self._pending and not any(str(k).startswith("eval_") for k in logs):
            extra.update(self._pending)
            self._pending = {}
        if extra:
            logs.update(extra)
            if state.log_history:
                state.log_history[-1].update(extra)

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._eval is not None:  # logging was off: the window still ends here
            self._end_eval()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.meter is None:
            return
        for window in (self._eval, self._epoch):
            if window is not None:
                self.meter.end(window, error="training ended with the window open")
        self._eval = self._epoch = None
        if self._train is not None:
            self._end_train()
        if self.total is not None:
            target = self.path or Path(args.output_dir) / MEASUREMENT_FILENAME
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(self.total.to_json() + "\n", encoding="utf-8")
            self.written = target
        if self._given_meter is None:
            self.meter.close()

    # -- internals -------------------------------------------------------------------------
    def _maybe_open_eval(self, control: Any) -> None:
        if self.meter is not None and self._eval is None and control.should_evaluate:
            self._eval = self.meter.begin("evaluation")

    def _end_eval(self) -> Measurement:
        meter, window = self.meter, self._eval
        if meter is None or window is None:
            raise RuntimeError("no evaluation window is open")
        self._eval = None
        return meter.end(window)

    def _end_train(self) -> Measurement:
        meter, window = self.meter, self._train
        if meter is None or window is None:
            raise RuntimeError("no training window is open")
        self._train = None
        self.total = meter.end(window)
        return self.total


def _short(m: Measurement, prefix: str) -> dict[str, float]:
    fields = metric_fields(m, prefix)
    return {f"{prefix}{k}": fields[f"{prefix}{k}"] for k in _SHORT}
