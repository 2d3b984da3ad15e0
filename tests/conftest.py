"""Suite-wide settings.

One torch thread per test process: the tests train tiny models, where intra-op threads
only add synchronisation, and on a shared 2-core machine oversubscribed OpenMP threads
slowed small operators by orders of magnitude (see benchmarks/RESULTS.md).

The meter fixtures (``meter_powercap``, ``meter_fake_nvml``, ``meter_no_powercap``, ...) are
a plugin, tests/meter_fixtures.py, loaded here for every test file: a test asks for one by
name and imports only the helper classes it uses (``FakeClock``, ``PowercapTree``, ...).
"""

from __future__ import annotations

import torch

pytest_plugins = ["meter_fixtures"]

torch.set_num_threads(1)
