#!/usr/bin/env bash
# The benchmarks on whatever accelerator JAX finds (GPU/TPU), as one command
# with a time box per part, so a short device loan returns partial results
# rather than none:
#
#   bash scripts/benchmark_device.sh OUT_DIR [SECONDS_PER_PART]
#
# Writes OUT_DIR/{overhead,train_step,program}_<backend>.json and a log of
# each part; commit the JSON under benchmarks/results/ and render it with
# `python -m benchmarks.report`. Uses the `python` on PATH if it already has
# jax, optax and flax (e.g. a GPU image with jax[cuda12]); otherwise sets up
# ./.venv like the tests do (CPU jax from the registry).
set -uo pipefail
out="${1:?usage: bash scripts/benchmark_device.sh OUT_DIR [SECONDS_PER_PART]}"
limit="${2:-240}"
mkdir -p "$out" && out="$(cd "$out" && pwd)"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! python -c 'import jax, optax, flax, ml_collections' 2>/dev/null; then
  source scripts/setup_env.sh
  set +e  # a part that fails or times out must not stop the others
fi
backend="$(python -c 'import jax; print(jax.default_backend())')"
echo "backend: $backend ($(python -c 'import jax; print(jax.devices()[0].device_kind)'))"

run_part() {  # name, then the module's arguments
  local name="$1"; shift
  echo "== $name"
  timeout "$limit" python -m "benchmarks.$name" "$@" \
    --json "$out/${name}_${backend}.json" > "$out/${name}_${backend}.log" 2>&1
  echo "   exit $? ($out/${name}_${backend}.log)"
}

run_part train_step --models lenet,cifar10_full,alexnet --seeds 8
run_part overhead --trees lenet,cifar10_full,alexnet,resnet50,deep_mlp_10,deep_mlp_100
run_part program --trees alexnet,resnet50,deep_mlp_100
