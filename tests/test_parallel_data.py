"""Uneven data parallel on gloo with 2 CPU processes, and energy across ranks.

One spawn for the whole module (spawned torch imports cost seconds): the two ranks train
frugal_mlp with a 3:1 split (26 samples, batch 8: the final batch of 2 goes wholly to rank
0, so rank 1 joins early each epoch), then open their meters over a fake powercap tree
that rank 1 advances by 5 J while both windows are open.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from frugalml.parallel import epoch_schedule, normalise_shares, spawn, split_counts
from meter_fixtures import PowercapTree

SHARES = (3.0, 1.0)
N_TRAIN = 26
BATCH = 8
EPOCHS = 2
LR = 1e-2


def _digits() -> Any:
    from frugalml.data import ImageDataset, Split, load_dataset

    full = load_dataset("digits")
    tr = full.train
    return ImageDataset(
        name="digits-26",
        num_classes=full.num_classes,
        channels=full.channels,
        image_size=full.image_size,
        class_names=full.class_names,
        train=Split(tr.images[:N_TRAIN], tr.labels[:N_TRAIN]),
        val=Split(full.val.images[:10], full.val.labels[:10]),
        test=Split(full.test.images[:10], full.test.labels[:10]),
    )


def _model() -> Any:
    import torch

    from frugalml.models import create_model

    torch.manual_seed(0)
    return create_model("frugal_mlp", num_classes=10, in_chans=1)


def _config() -> Any:
    from frugalml.train import TrainConfig

    return TrainConfig(
        epochs=EPOCHS,
        batch_size=BATCH,
        lr=LR,
        device="cpu",
        seed=0,
        normalization="none",
        data_path="tensors",
    )


def _worker(rank: int, world: int, out: str, images: np.ndarray, labels: np.ndarray) -> None:
    import time

    import torch
    import torch.distributed as dist

    from frugalml.parallel import calibrate_shares, combine_energy, rank_meter, train_uneven

    torch.set_num_threads(1)
    x = torch.from_numpy(images).to(torch.float32) * (1.0 / 255.0)
    y = torch.from_numpy(labels.astype(np.int64))
    model = _model()
    run = train_uneven(model, x, y, _config(), normalise_shares(SHARES))
    torch.save(model.state_dict(), Path(out) / f"rank{rank}.pt")
    # calibration with rank 1 emulated 8x slower: the measured shares favour rank 0
    calibrated = calibrate_shares(model, x, y, 2 * N_TRAIN, steps=6, slowdown=(1.0, 8.0)[rank])

    meter = rank_meter(rank, "cpu")
    with meter:
        window = meter.begin("train")
        dist.barrier()
        if rank == 1:  # the host's counter moves once, by 5 J, while both windows are open
            (Path(out) / "powercap" / "intel-rapl:0" / "energy_uj").write_text("5000000\n")
        dist.barrier()
        time.sleep(0.1)  # keep the 5 J plausible for the counter's power bound
        measurement = meter.end(window)
    combined = combine_energy(measurement, rank, rank)
    if rank == 0:
        (Path(out) / "result.json").write_text(
            json.dumps(
                {"run": run.__dict__, "energy": combined.to_dict(), "calibrated": calibrated}
            )
        )
    else:
        (Path(out) / "run1.json").write_text(json.dumps(run.__dict__))


@pytest.fixture(scope="module")
def spawned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    tree = PowercapTree(out / "powercap")
    tree.zone("intel-rapl:0", "package-0", energy_uj=0, max_range_uj=262_143_328_850)
    tree.zone("intel-rapl:0:0", "dram", energy_uj=0, max_range_uj=262_143_328_850)
    mp = pytest.MonkeyPatch()
    mp.setenv("FRUGALML_POWERCAP_ROOT", str(tree.root))
    data = _digits()
    try:
        spawn(_worker, 2, str(out), data.train.images, data.train.labels)
    finally:
        mp.undo()
    return out


def test_split_counts_by_largest_remainder() -> None:
    shares = normalise_shares(SHARES)
    assert split_counts(8, shares) == [6, 2]
    assert split_counts(2, shares) == [2, 0]  # tie at 1.5/0.5: the lower rank
    assert split_counts(5, shares) == [4, 1]
    assert sum(split_counts(1001, normalise_shares((1, 2, 4)))) == 1001


def test_schedule_leaves_rank1_out_of_the_final_batch() -> None:
    shares = normalise_shares(SHARES)
    r0 = epoch_schedule(N_TRAIN, BATCH, 0, 1, shares, 0)
    r1 = epoch_schedule(N_TRAIN, BATCH, 0, 1, shares, 1)
    assert [len(i) for i, _ in r0.steps] == [6, 6, 6, 2]
    assert [len(i) for i, _ in r1.steps] == [2, 2, 2]
    assert r0.full_rank == 0
    import torch

    together = torch.cat(
        [torch.cat([a, b]) for (a, _), (b, _) in zip(r0.steps[:3], r1.steps, strict=True)]
    )
    assert sorted([*together.tolist(), *r0.steps[-1][0].tolist()]) == list(range(N_TRAIN))


@pytest.mark.slow
def test_uneven_split_equals_one_process_on_the_whole_batch(spawned: Path) -> None:
    import torch

    from frugalml.train import train

    reference = _model()
    train(reference, _digits(), _config())
    want = reference.state_dict()
    result = json.loads((spawned / "result.json").read_text())
    assert result["run"]["steps"] == EPOCHS * 4
    assert json.loads((spawned / "run1.json").read_text())["steps"] == EPOCHS * 3  # joined early
    for rank in (0, 1):
        got = torch.load(spawned / f"rank{rank}.pt", weights_only=True)
        for name, tensor in want.items():
            torch.testing.assert_close(got[name], tensor, rtol=0, atol=1e-6, msg=name)
    # and training moved the weights (the comparison is not vacuous)
    untouched = _model().state_dict()
    assert any((untouched[k] - want[k]).abs().max() > 1e-3 for k in want)


@pytest.mark.slow
def test_calibration_gives_the_slow_rank_less(spawned: Path) -> None:
    shares = json.loads((spawned / "result.json").read_text())["calibrated"]
    assert sum(shares) == pytest.approx(1.0)
    assert shares[0] > 0.6 > shares[1]  # 8x slower: about 0.9 : 0.1, with room for noise


@pytest.mark.slow
def test_two_ranks_count_the_host_once(spawned: Path) -> None:
    energy = json.loads((spawned / "result.json").read_text())["energy"]
    assert energy["energy_j"] == pytest.approx(5.0)  # not 10 J
    ranks = {r["rank"]: r for r in energy["ranks"]}
    assert ranks[0]["reads_host"] and not ranks[1]["reads_host"]
    assert ranks[1]["components"] == []
    sources = {c["source"].split(":")[0] for c in ranks[0]["components"]}
    assert sources == {"rapl"}
    assert sum(c["energy_j"] for c in ranks[0]["components"]) == pytest.approx(5.0)
    assert energy["provenance"] == "measured"
