#!/usr/bin/env bash
# One accelerator loan in a fixed time box: the two sweeps too slow for 2 CPU
# cores, then the benchmarks (what and how: experiments/accelerator.py).
#
#   bash scripts/accelerator_sweeps.sh OUT_DIR SECONDS [CIFAR10_DIR] [MNIST_DIR]
#
# Extra arguments: $SWEEP_ARGS for both sweeps (a rehearsal:
# --config.num_steps=20 ...), $TRAIN_STEP_ARGS and $OVERHEAD_ARGS for the
# benchmarks, $RESULTS_DIR (default experiments/results) for where the
# sweeps live. Uses the `python` on PATH if it has what the experiments need
# (a GPU image), else ./.venv. tests/experiments/test_sweep.py rehearses it
# on CPU.
set -euo pipefail
out="${1:?usage: bash scripts/accelerator_sweeps.sh OUT_DIR SECONDS [CIFAR10_DIR] [MNIST_DIR]}"
budget="${2:?usage: bash scripts/accelerator_sweeps.sh OUT_DIR SECONDS [CIFAR10_DIR] [MNIST_DIR]}"
mkdir -p "$out" && out="$(cd "$out" && pwd)"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cifar="$(cd "${3:-$root/../shared/data/cifar10-jpeg}" && pwd)"
mnist="$(cd "${4:-$root/../shared/data/mnist}" && pwd)"
results="${RESULTS_DIR:-$root/experiments/results}"
mkdir -p "$results" && results="$(cd "$results" && pwd)"
cd "$root"
if ! python -c 'import jax, optax, flax, ml_collections, tensorboardX, tqdm' \
    2>/dev/null; then
  source scripts/setup_env.sh
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec python -m experiments.accelerator "$out" "$budget" \
  --cifar-dir "$cifar" --mnist-dir "$mnist" --results-dir "$results" \
  --sweep-args "${SWEEP_ARGS:-}" --train-step-args "${TRAIN_STEP_ARGS:-}" \
  --overhead-args "${OVERHEAD_ARGS:-}"
