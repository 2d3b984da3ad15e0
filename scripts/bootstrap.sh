#!/usr/bin/env bash
# Create .venv and install frugalml with its test tools. Safe to run again (it only
# installs what is missing). Set FRUGALML_TORCH_SPEC to pick another torch build, e.g.
#   FRUGALML_TORCH_SPEC="torch torchvision" bash scripts/bootstrap.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
# The CPU development machines pin this torch/torchvision pair (a matching pair is
# needed for timm); pyproject.toml itself only asks for torch>=2.4.
TORCH_SPEC=${FRUGALML_TORCH_SPEC:-"torch==2.14.1 torchvision==0.29.1"}
if ! .venv/bin/python -c "import torch, torchvision" >/dev/null 2>&1; then
    # shellcheck disable=SC2086
    .venv/bin/python -m pip install -q $TORCH_SPEC
fi
.venv/bin/python -m pip install -q -e ".[dev]"
