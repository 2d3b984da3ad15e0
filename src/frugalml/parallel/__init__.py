"""Training one model across several, unequal devices.

Modules (private; everything public is re-exported here):

- ``_network``: :class:`LayerSpec` / :class:`Network`, read from AccPar's layer format
  (:func:`read_accpar_network`), AccPar's generated ResNets (:func:`accpar_resnet`), or
  traced from any torch model (:func:`network_from_model`).
- ``_planner``: the AccPar partition planner (types I/II/III per layer and level):
  :func:`plan_comm_only` reproduces AccPar's tables, :func:`plan` adds compute, link
  bandwidth and a split ratio per level and predicts step times.
- ``_shares``: how a global batch is split over ranks by their throughput.
- ``_energy``: who reads which counter across ranks, and the one all-reduce combining them.
- ``_data_parallel``: uneven data parallel on ``torch.distributed`` (gloo/NCCL), losses
  weighted by share, ``Join`` for ranks that run out of batches first.
- ``_run``: :func:`run_data_parallel`, one model over local processes (``frugalml train``),
  or as one rank of a ``torchrun`` group over several machines (:func:`launch_env`).
- ``_study``: :func:`train_trial_ranks`, a study trial with a ``parallel:`` section trained
  by local ranks inside :func:`frugalml.study.run_metered_trial`.
- ``_tensor``: experimental: types II and III executed for linear and conv layers with an
  uneven split (padded collectives).

Importing this package loads neither torch nor timm.
"""

from __future__ import annotations

from frugalml.parallel._data_parallel import (
    Backend,
    EpochSchedule,
    LaunchEnv,
    ParallelConfig,
    RankRun,
    calibrate_shares,
    check_backend,
    epoch_schedule,
    join_from_env,
    launch_env,
    resolve_backend,
    spawn,
    train_uneven,
)
from frugalml.parallel._energy import (
    CombinedEnergy,
    RankEnergy,
    combine_energy,
    gather_measurement,
    merge_measurements,
    rank_meter,
)
from frugalml.parallel._network import (
    LayerKind,
    LayerSpec,
    Network,
    accpar_resnet,
    network_from_model,
    read_accpar_network,
)
from frugalml.parallel._planner import (
    COMM_ONLY_STRATEGIES,
    STRATEGIES,
    DeviceSpec,
    LevelPlan,
    PartitionType,
    Plan,
    Strategy,
    plan,
    plan_comm_only,
    search_level,
)
from frugalml.parallel._run import ParallelResult, run_data_parallel
from frugalml.parallel._shares import normalise_shares, shares_from_throughput, split_counts
from frugalml.parallel._study import RankedTraining, check_trial_parallel, train_trial_ranks
from frugalml.parallel._tensor import (
    ChannelType,
    apply_plan,
    padded_all_gather,
    padded_reduce_scatter,
    split_layer,
)

__all__ = [
    "COMM_ONLY_STRATEGIES",
    "STRATEGIES",
    "Backend",
    "ChannelType",
    "CombinedEnergy",
    "DeviceSpec",
    "EpochSchedule",
    "LaunchEnv",
    "LayerKind",
    "LayerSpec",
    "LevelPlan",
    "Network",
    "ParallelConfig",
    "ParallelResult",
    "PartitionType",
    "Plan",
    "RankEnergy",
    "RankRun",
    "RankedTraining",
    "Strategy",
    "accpar_resnet",
    "apply_plan",
    "calibrate_shares",
    "check_backend",
    "check_trial_parallel",
    "combine_energy",
    "epoch_schedule",
    "gather_measurement",
    "join_from_env",
    "launch_env",
    "merge_measurements",
    "network_from_model",
    "normalise_shares",
    "padded_all_gather",
    "padded_reduce_scatter",
    "plan",
    "plan_comm_only",
    "rank_meter",
    "read_accpar_network",
    "resolve_backend",
    "run_data_parallel",
    "search_level",
    "shares_from_throughput",
    "spawn",
    "split_counts",
    "split_layer",
    "train_trial_ranks",
    "train_uneven",
]
