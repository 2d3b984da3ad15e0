"""Suite-wide settings.

One torch thread per test process: the tests train tiny models, where intra-op threads
only add synchronisation, and on a shared 2-core machine oversubscribed OpenMP threads
slowed small operators by orders of magnitude (see benchmarks/RESULTS.md).
"""

from __future__ import annotations

import torch

torch.set_num_threads(1)
