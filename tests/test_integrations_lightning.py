"""Lightning: the callback under real DDP (2 CPU processes on gloo) on a fake powercap tree
that only global rank 0's steps advance: one set of logs, the host counted once."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from frugalml.integrations.lightning import combine_hosts
from frugalml.meter import ComponentEnergy, Measurement
from meter_fixtures import PowercapTree

_JOB = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    import torch
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import CSVLogger
    from torch.utils.data import DataLoader, TensorDataset
    from frugalml.integrations.lightning import FrugalLightningCallback
    from frugalml.meter import MeterConfig

    out, zone, fail = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "fail"

    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(4, 2)

        def training_step(self, batch, index):
            if self.global_rank == 0:  # the host's package counter: +0.5 J per rank-0 step
                value = int(zone.read_text()) + 500_000
                tmp = zone.with_name("energy_uj.tmp")
                tmp.write_text(f"{value}\\n")
                os.replace(tmp, zone)
            if fail and self.current_epoch == 1:
                raise RuntimeError("boom")
            x, y = batch
            return torch.nn.functional.cross_entropy(self.net(x), y)

        def validation_step(self, batch, index):
            x, y = batch
            self.log("val_loss", torch.nn.functional.cross_entropy(self.net(x), y))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    torch.manual_seed(0)
    data = TensorDataset(torch.randn(64, 4), torch.randint(0, 2, (64,)))
    callback = FrugalLightningCallback(MeterConfig(gpus="none", rapl_max_power_w=1e5))
    trainer = pl.Trainer(
        accelerator="cpu", devices=2, strategy="ddp", max_epochs=2,
        logger=CSVLogger(str(out), name="logs"), default_root_dir=str(out),
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, callbacks=[callback],
    )
    try:
        trainer.fit(Tiny(), DataLoader(data, batch_size=8), DataLoader(data, batch_size=8))
    finally:
        if trainer.global_rank == 0:
            (out / f"rank0-{os.getpid()}.json").write_text(json.dumps(callback.logged))
    """
)


def _run(tmp_path: Path, tree: PowercapTree, mode: str) -> subprocess.CompletedProcess[str]:
    tree.zone("intel-rapl:0", "package-0", energy_uj=0)
    tree.zone("intel-rapl:0:0", "dram", energy_uj=0)
    script = tmp_path / "job.py"
    script.write_text(_JOB)
    zone = tree.root / "intel-rapl:0" / "energy_uj"
    env = {**os.environ, "PL_DISABLE_FORK": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(script), str(tmp_path / "out"), str(zone), mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.mark.slow
def test_ddp_two_processes_count_the_host_once(
    tmp_path: Path, meter_powercap: PowercapTree
) -> None:
    done = _run(tmp_path, meter_powercap, "ok")
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "out"
    (result,) = list(out.glob("rank0-*.json"))  # one global rank 0
    logged = json.loads(result.read_text())
    epochs = [m for m in logged if "epoch_energy_j" in m]
    # 64 samples, batch 8, 2 ranks: 4 steps per rank per epoch; rank 0's 4 steps x 0.5 J
    assert [m["epoch_energy_j"] for m in epochs] == pytest.approx([2.0, 2.0])
    (train,) = [m for m in logged if "train_energy_j" in m]
    assert train["train_energy_j"] == pytest.approx(4.0)  # not 8: the host counted once
    assert train["train_measured_energy_j"] == pytest.approx(4.0)
    assert len([m for m in logged if "val_energy_j" in m]) == 2
    with (out / "logs" / "version_0" / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len([r for r in rows if r.get("epoch_energy_j")]) == 2  # one set of logs
    total = Measurement.from_json((out / "frugalml_measurement.json").read_text())
    assert total.energy_j == pytest.approx(4.0) and total.provenance == "measured"
    assert [c.component for c in total.components] == ["cpu:0", "dram:0"]


@pytest.mark.slow
def test_ddp_exception_still_writes_what_was_measured(
    tmp_path: Path, meter_powercap: PowercapTree
) -> None:
    done = _run(tmp_path, meter_powercap, "fail")
    assert done.returncode != 0 and "boom" in done.stderr
    total = Measurement.from_json((tmp_path / "out" / "frugalml_measurement.json").read_text())
    assert total.error is not None and "boom" in total.error
    # epoch 0's four steps and the first step of epoch 1 were counted: 5 x 0.5 J
    assert total.energy_j == pytest.approx(2.5)


def test_combining_hosts_prefixes_components_and_sums() -> None:
    def host(energy_j: float, co2_g: float) -> Measurement:
        part = ComponentEnergy("cpu:0", energy_j, "rapl:package", "measured")
        return Measurement(
            "x",
            f"2026-01-01T00:00:0{energy_j:.0f}",
            5.0 + energy_j,
            1.0,
            energy_j,
            (part,),
            co2_g,
            100.0,
            "t",
            1.0,
        )

    one = combine_hosts("train", [("node0", host(3.0, 0.1))])
    assert one.name == "train" and one.components[0].component == "cpu:0"
    both = combine_hosts("train", [("node0", host(3.0, 0.1)), ("node1", host(4.0, 0.2))])
    assert both.energy_j == 7.0 and both.co2_g == pytest.approx(0.3)
    assert [c.component for c in both.components] == ["node0/cpu:0", "node1/cpu:0"]
    assert both.duration_s == 9.0 and both.cpu_time_s == 2.0
