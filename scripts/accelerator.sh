#!/usr/bin/env bash
# One accelerator loan in a fixed time box: the paper's CIFAR-10 Table II at
# its full schedules (a probe plans what fits), then the benchmarks with
# their spread (what and how: experiments/accelerator.py).
#
#   bash scripts/accelerator.sh OUT_DIR SECONDS [CIFAR10_DIR]
#
# Extra arguments through the environment: $TRAIN_ARGS for every training
# command (a rehearsal: --config.num_steps=8 ...), $TRAIN_STEP_ARGS and
# $OVERHEAD_ARGS for the benchmarks, $ACCELERATOR_ARGS for
# experiments.accelerator itself (--seeds, --probe-steps, --bench-seconds,
# --bench-repetitions), $RESULTS_DIR (default experiments/results) for where
# the experiments' folders live. Uses the `python` on PATH if it has what
# the experiments need (a GPU image), else ./.venv.
# tests/experiments/test_accelerator.py rehearses it on CPU.
set -euo pipefail
usage="usage: bash scripts/accelerator.sh OUT_DIR SECONDS [CIFAR10_DIR]"
out="${1:?$usage}"
budget="${2:?$usage}"
mkdir -p "$out" && out="$(cd "$out" && pwd)"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cifar="$(cd "${3:-$root/../shared/data/cifar10-jpeg}" && pwd)"
results="${RESULTS_DIR:-$root/experiments/results}"
mkdir -p "$results" && results="$(cd "$results" && pwd)"
cd "$root"
if ! python -c 'import jax, optax, flax, ml_collections, tensorboardX, tqdm' \
    2>/dev/null; then
  source scripts/setup_env.sh
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
# shellcheck disable=SC2086
exec python -m experiments.accelerator "$out" "$budget" \
  --cifar-dir "$cifar" --results-dir "$results" \
  --train-args "${TRAIN_ARGS:-}" --train-step-args "${TRAIN_STEP_ARGS:-}" \
  --overhead-args "${OVERHEAD_ARGS:-}" ${ACCELERATOR_ARGS:-}
