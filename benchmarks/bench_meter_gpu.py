"""GPU check: the meter's GPU energy vs a direct NVML counter read and vs power sampling.

Runs a fixed matmul workload on CUDA device 0 and measures it three ways at once:

1. the frugalml Meter (one window around the workload; NVML total-energy counter);
2. an independent direct read of ``nvmlDeviceGetTotalEnergyConsumption`` before and after
   (CUDA synchronised at both ends);
3. a second, independent NVML backend forced into power sampling (``nvmlDeviceGetPowerUsage``
   every 0.1 s in its own thread, trapezoid rule).

Prints the three energies and the ratios meter/direct and sampling/direct. Without CUDA or
NVML it says "no NVIDIA GPU" and exits 0.

    .venv/bin/python benchmarks/bench_meter_gpu.py --seconds 20
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import threading
import time
from datetime import datetime, timezone


def _no_gpu(reason: str) -> None:
    print(f"no NVIDIA GPU: {reason}; nothing measured")
    sys.exit(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="workload duration")
    parser.add_argument("--size", type=int, default=8192, help="square matrix size")
    args = parser.parse_args()

    try:
        import torch
    except ImportError:
        _no_gpu("torch is not installed")
    if not torch.cuda.is_available():
        _no_gpu("torch.cuda.is_available() is False")
    from frugalml.meter import Meter, MeterConfig, probe_nvml
    from frugalml.meter._nvml import NvmlBackend, _import_pynvml

    probe = probe_nvml()
    if probe.status != "ok" or not probe.visible:
        _no_gpu(probe.reason)
    info = probe.visible[0]
    nvml = _import_pynvml()

    device = torch.device("cuda", 0)
    a = torch.randn(args.size, args.size, device=device)
    b = torch.randn(args.size, args.size, device=device)
    torch.cuda.synchronize()

    def workload() -> int:
        steps = 0
        end = time.monotonic() + args.seconds
        while time.monotonic() < end:
            for _ in range(10):
                torch.mm(a, b)
            torch.cuda.synchronize()
            steps += 10
        return steps

    nvml.nvmlInit()
    try:
        handle = nvml.nvmlDeviceGetHandleByIndex(info.nvml_index)
        sampling_info = dataclasses.replace(info, energy_counter=False)
        sampler = NvmlBackend(nvml, [(sampling_info, handle)], sample_interval_s=0.1)
        stop = threading.Event()

        def poll() -> None:
            while not stop.wait(0.1):
                sampler.poll()

        thread = threading.Thread(target=poll, daemon=True)
        with Meter(MeterConfig(gpus=(0,))) as meter:
            thread.start()
            sampled_before = sampler.read()[0].energy_j
            torch.cuda.synchronize()
            direct_before_mj = nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
            with meter.window("matmul") as window:
                started = time.monotonic()
                steps = workload()
                elapsed = time.monotonic() - started
            torch.cuda.synchronize()
            direct_after_mj = nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
            sampled_after = sampler.read()[0].energy_j
            stop.set()
            thread.join()
        sampler.close()  # also balances this script's nvmlInit
    except BaseException:
        nvml.nvmlShutdown()
        raise
    m = window.measurement
    if m is None:
        raise SystemExit("the meter recorded nothing")
    gpu = next(c for c in m.components if c.component == "gpu:0")
    direct_j = (direct_after_mj - direct_before_mj) / 1000.0
    sampled_j = sampled_after - sampled_before
    flops = 2.0 * args.size**3 * steps
    print(f"date: {datetime.now(timezone.utc).isoformat(timespec='seconds')}")
    print(f"GPU: {info.name} ({info.uuid}), driver {probe.driver_version}")
    print(f"command: {' '.join(['python', *sys.argv])}")
    print(
        f"workload: {steps} fp32 matmuls {args.size}x{args.size} in {elapsed:.2f} s "
        f"({flops / elapsed / 1e12:.1f} TFLOP/s)"
    )
    print(f"meter window:        {gpu.energy_j:10.1f} J  ({gpu.source})")
    print(f"direct NVML counter: {direct_j:10.1f} J")
    print(f"power sampling:      {sampled_j:10.1f} J  (0.1 s, trapezoid)")
    print(f"mean power (direct): {direct_j / elapsed:10.1f} W")
    print(f"ratio meter / direct:    {gpu.energy_j / direct_j:.4f}")
    print(f"ratio sampling / direct: {sampled_j / direct_j:.4f}")


if __name__ == "__main__":
    main()
