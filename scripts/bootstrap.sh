#!/usr/bin/env bash
# Create .venv and install frugalml with its test tools. Safe to run again (it only
# installs what is missing).
#
# What it installs: the torch/torchvision pair "torch==2.14.1 torchvision==0.29.1" (a
# matching pair is needed for timm; pyproject.toml itself only asks for torch>=2.4), then
# frugalml in editable mode with its [dev] extra.
#
# Which build of that pair:
#   - a machine with an NVIDIA GPU (/proc/driver/nvidia or nvidia-smi present) gets the
#     build the package index serves (on Linux that is the CUDA build, with its nvidia-*
#     packages: several GB);
#   - a machine without one first tries the CPU-only build from the PyTorch CPU index
#     (FRUGALML_TORCH_CPU_INDEX, default https://download.pytorch.org/whl/cpu), giving up
#     after one 5 s attempt, and falls back to the index's build when that index cannot be
#     reached (then possibly the CUDA build: it runs on a CPU, it is only larger);
#   - FRUGALML_TORCH_SPEC chooses exactly what to install and skips both, e.g.
#       FRUGALML_TORCH_SPEC="torch torchvision" bash scripts/bootstrap.sh
#     and FRUGALML_TORCH_CPU=0 skips the CPU attempt.
# The last line says which torch it got (version, CUDA or CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
PIN="torch==2.14.1 torchvision==0.29.1"
CPU_PIN="torch==2.14.1+cpu torchvision==0.29.1+cpu"
CPU_INDEX=${FRUGALML_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}

has_nvidia_gpu() {
    [ -e /proc/driver/nvidia/version ] || command -v nvidia-smi >/dev/null 2>&1
}

if ! .venv/bin/python -c "import torch, torchvision" >/dev/null 2>&1; then
    if [ -n "${FRUGALML_TORCH_SPEC:-}" ]; then
        echo "bootstrap: installing FRUGALML_TORCH_SPEC: $FRUGALML_TORCH_SPEC"
        # shellcheck disable=SC2086
        .venv/bin/python -m pip install -q $FRUGALML_TORCH_SPEC
    elif ! has_nvidia_gpu && [ "${FRUGALML_TORCH_CPU:-1}" != "0" ] \
        && echo "bootstrap: no NVIDIA GPU; trying the CPU-only build from $CPU_INDEX" \
        && .venv/bin/python -m pip install -q --timeout 5 --retries 0 \
            --index-url "$CPU_INDEX" $CPU_PIN; then
        echo "bootstrap: installed the CPU-only build ($CPU_PIN)"
    else
        if ! has_nvidia_gpu; then
            echo "bootstrap: the CPU-only build cannot be had here; installing $PIN from" \
                "the configured package index (set FRUGALML_TORCH_SPEC to choose)"
        fi
        # shellcheck disable=SC2086
        .venv/bin/python -m pip install -q $PIN
    fi
fi
.venv/bin/python -m pip install -q -e ".[dev]"
.venv/bin/python -c "import torch; print('bootstrap: torch', torch.__version__, \
'(CUDA ' + torch.version.cuda + ' build)' if torch.version.cuda else '(CPU-only build)')"
