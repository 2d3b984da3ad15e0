"""Several machines, emulated: 2 processes started with the environment torchrun sets
(RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), each its own
"host" (LOCAL_RANK 0, LOCAL_WORLD_SIZE 1, its own fake powercap tree), joined over TCP on
localhost with gloo. Each host's counter is read by its local rank 0, so both hosts are
counted, each once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from frugalml.errors import ConfigError
from frugalml.parallel import LaunchEnv, launch_env
from meter_fixtures import PowercapTree

REPO = Path(__file__).resolve().parents[1]

#: One emulated host's rank: join from the environment, read this host's counter (which
#: moves by HOST_J joules while every window is open), combine once.
_RANK = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    import torch.distributed as dist
    from frugalml.parallel import combine_energy, join_from_env, rank_meter

    env = join_from_env("gloo")
    meter = rank_meter(env.local_rank, "cpu")
    with meter:
        window = meter.begin("train")
        dist.barrier()
        tree = Path(os.environ["FRUGALML_POWERCAP_ROOT"]) / "intel-rapl:0" / "energy_uj"
        tree.write_text(str(int(float(os.environ["HOST_J"]) * 1e6)) + "\\n")
        dist.barrier()
        time.sleep(0.1)  # keep the joules plausible for the counter's power bound
        measurement = meter.end(window)
    combined = combine_energy(measurement, env.rank, env.local_rank)
    if env.rank == 0:
        Path(sys.argv[1]).write_text(json.dumps(combined.to_dict()))
    dist.barrier()
    dist.destroy_process_group()
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _hosts(tmp_path: Path, command: list[str], joules: tuple[float, float]) -> list[str]:
    """Start one process per emulated host with torchrun's variables; their outputs."""
    port = _free_port()
    procs = []
    for rank, host_j in enumerate(joules):
        tree = PowercapTree(tmp_path / f"host{rank}")
        tree.zone("intel-rapl:0", "package-0", energy_uj=0, max_range_uj=262_143_328_850)
        tree.zone("intel-rapl:0:0", "dram", energy_uj=0, max_range_uj=262_143_328_850)
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO / "src"),
            "FRUGALML_POWERCAP_ROOT": str(tree.root),
            "HOST_J": str(host_j),
            "RANK": str(rank),
            "WORLD_SIZE": "2",
            "LOCAL_RANK": "0",  # every process is local rank 0 of its own host
            "LOCAL_WORLD_SIZE": "1",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
        procs.append(
            subprocess.Popen(
                command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
        )
    outputs = []
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        outputs.append(out.decode(errors="replace"))
        assert proc.returncode == 0, outputs[-1][-3000:]
    return outputs


def test_launch_env_reads_torchrun_variables() -> None:
    got = launch_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"})
    assert got == LaunchEnv(rank=3, world_size=4, local_rank=1, local_world_size=2)
    assert launch_env({"LOCAL_RANK": "0"}) is None  # not launched by torchrun
    assert launch_env({"RANK": "1", "WORLD_SIZE": "2"}) == LaunchEnv(1, 2, 1, 2)  # one host
    with pytest.raises(ConfigError, match="LOCAL_RANK='x' is not an integer"):
        launch_env({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "x"})
    with pytest.raises(ConfigError, match="inconsistent"):
        launch_env({"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"})


@pytest.mark.slow
def test_two_emulated_hosts_are_each_counted_once(tmp_path: Path) -> None:
    out = tmp_path / "energy.json"
    _hosts(tmp_path, [sys.executable, "-c", _RANK, str(out)], (5.0, 3.0))
    energy = json.loads(out.read_text())
    ranks = {r["rank"]: r for r in energy["ranks"]}
    assert ranks[0]["local_rank"] == ranks[1]["local_rank"] == 0
    assert ranks[0]["reads_host"] and ranks[1]["reads_host"]  # one reader per host
    assert ranks[0]["energy_j"] == pytest.approx(5.0)
    assert ranks[1]["energy_j"] == pytest.approx(3.0)
    assert energy["energy_j"] == pytest.approx(8.0)  # both hosts, each once
    for rank in ranks.values():
        assert {c["source"].split(":")[0] for c in rank["components"]} == {"rapl"}


@pytest.mark.slow
def test_frugalml_train_under_torchrun_variables(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "frugalml",
        "train",
        "--model",
        "frugal_mlp",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--shares",  # no --nproc: under torchrun it is the world size
        "3,1",
        "--json",
    ]
    outputs = _hosts(tmp_path, [*command, "result.json"], (0.0, 0.0))
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["nproc"] == 2 and result["backend"] == "gloo"
    assert result["shares"] == [0.75, 0.25] and result["steps"][0] == result["steps"][1] > 0
    ranks = {r["rank"]: r for r in result["energy"]["ranks"]}
    assert ranks[0]["reads_host"] and ranks[1]["reads_host"]  # LOCAL_RANK 0 on both hosts
    for rank in ranks.values():
        assert {c["source"].split(":")[0] for c in rank["components"]} == {"rapl"}
    assert "test accuracy" in outputs[0]
