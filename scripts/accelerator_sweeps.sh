#!/usr/bin/env bash
# The sweeps too slow for 2 CPU cores (cifar10_full_short, mnist_transformer)
# on one accelerator, in a fixed time box, then the benchmarks there:
#
#   bash scripts/accelerator_sweeps.sh OUT_DIR SECONDS [CIFAR10_DIR] [MNIST_DIR]
#
# Each sweep trains its methods in parallel workers (`experiments.sweep
# --parallel`, one method per worker, all sharing the one device). At
# SECONDS minus the benchmarks' share (a fifth) the sweeps are stopped: every
# finished run is kept and the same command continues them. OUT_DIR gets
# sweeps.tgz (both sweeps' runs/, outputs and worker logs; refreshed every
# 30 s, so a command killed early still returns what finished), bench.tgz,
# device.log and code.sha256 (the code's file hashes: compare them with a
# commit's when the machine's copy of .git cannot be trusted). Unpack
# sweeps.tgz in the repo root to add the runs to
# experiments/results/<experiment>_sweep/ (then `python -m experiments.report
# sweep ...` for the outputs). Extra sweep arguments for both (e.g. a tiny
# rehearsal: --config.num_steps=20 ...) go in $SWEEP_ARGS, the benchmarks'
# (e.g. --quick) in $TRAIN_STEP_ARGS and $OVERHEAD_ARGS. $RESULTS_DIR
# (default experiments/results) is where the sweeps live; sweeps.tgz names
# them experiments/results/<experiment>_sweep/ wherever they live. Uses the
# `python` on PATH if it already has what the experiments need (e.g. a GPU
# image), else ./.venv (CPU jax). tests/experiments/test_sweep.py rehearses the whole
# script on CPU.
set -uo pipefail
out="${1:?usage: bash scripts/accelerator_sweeps.sh OUT_DIR SECONDS [CIFAR10_DIR] [MNIST_DIR]}"
budget="${2:?usage: bash scripts/accelerator_sweeps.sh OUT_DIR SECONDS [CIFAR10_DIR] [MNIST_DIR]}"
start=$(date +%s)
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cifar="${3:-../shared/data/cifar10-jpeg}"
mnist="${4:-../shared/data/mnist}"
mkdir -p "$out" && out="$(cd "$out" && pwd)"
exec > >(tee -a "$out/device.log") 2>&1
if ! python -c 'import jax, optax, flax, ml_collections, tensorboardX, tqdm' \
    2>/dev/null; then
  source scripts/setup_env.sh
  set +e
fi
export PYTHONUNBUFFERED=1
python -c 'import jax, optax, flax; print("jax", jax.__version__, "optax",
optax.__version__, "flax", flax.__version__, jax.devices())'
echo "commit: $(git rev-parse HEAD 2>&1) $(git status --porcelain \
  --untracked-files=no 2>&1 | wc -l) changed tracked files"
# A copied checkout may carry a stale .git (one loan did: every run then
# recorded the wrong commit). The code's own hashes, to compare with a
# commit's afterwards (same command there):
find layerlr_optax experiments scripts -name '*.py' -o -name '*.sh' \
  | LC_ALL=C sort | xargs sha256sum > "$out/code.sha256"
bench_share=$(( budget / 5 ))
sweep_end=$(( start + budget - bench_share ))
results="${RESULTS_DIR:-experiments/results}"
mkdir -p "$results" && results="$(cd "$results" && pwd)"
cifar_sweep="$results/cifar10_full_short_sweep"
transformer_sweep="$results/mnist_transformer_sweep"

snapshot() {
  (cd "$results" && tar czf "$out/sweeps.tgz.part" --exclude=tensorboard \
    --transform 's,^,experiments/results/,' \
    $(ls -d cifar10_full_short_sweep mnist_transformer_sweep 2>/dev/null)) \
    && mv "$out/sweeps.tgz.part" "$out/sweeps.tgz"
}

# Decode CIFAR-10's JPEGs once (cached) before the workers start.
python -c "from experiments.lib import data; import sys
d = data.load('cifar10', 'local', sys.argv[1]); print('cifar10', d.train_images.shape)" "$cifar"
left=$(( sweep_end - $(date +%s) ))
echo "sweeps: ${left}s"
timeout -k 60 "$left" python -m experiments.sweep cifar10_full_short \
  --workdir "$cifar_sweep" --config.data_source=local \
  --config.data_dir="$cifar" --parallel 5 ${SWEEP_ARGS:-} > "$out/cifar_sweep.log" 2>&1 &
cifar_pid=$!
timeout -k 60 "$left" python -m experiments.sweep mnist_transformer \
  --workdir "$transformer_sweep" --config.data_source=local \
  --config.data_dir="$mnist" --parallel 7 ${SWEEP_ARGS:-} > "$out/transformer_sweep.log" 2>&1 &
transformer_pid=$!
# Checked every second (a loan's time is short), snapshot every 30 s.
tick=0
while kill -0 "$cifar_pid" 2>/dev/null || kill -0 "$transformer_pid" 2>/dev/null; do
  sleep 1
  tick=$(( tick + 1 ))
  if (( tick % 30 == 0 )); then
    snapshot
    echo "t=$(( $(date +%s) - start ))s: $(ls $cifar_sweep/runs 2>/dev/null | wc -l) cifar runs, $(ls $transformer_sweep/runs 2>/dev/null | wc -l) transformer runs"
  fi
done
wait "$cifar_pid"; echo "cifar sweep exit $?"
wait "$transformer_pid"; echo "transformer sweep exit $?"
snapshot
tail -n 40 "$out/cifar_sweep.log" "$out/transformer_sweep.log"
# Benchmarks alone on the device, in what is left: the two that fit in
# about a minute each on an H200 (benchmark_device.sh runs them all).
backend="$(python -c 'import jax; print(jax.default_backend())')"
mkdir -p "$out/bench"
left=$(( start + budget - $(date +%s) - 10 ))
[ "$left" -gt 20 ] && timeout $(( left / 2 )) python -m benchmarks.train_step \
  --models lenet,cifar10_full --seeds 8 \
  --json "$out/bench/train_step_${backend}.json" ${TRAIN_STEP_ARGS:-}
left=$(( start + budget - $(date +%s) - 10 ))
[ "$left" -gt 20 ] && timeout "$left" python -m benchmarks.overhead \
  --trees lenet,alexnet,resnet50 --json "$out/bench/overhead_${backend}.json" \
  ${OVERHEAD_ARGS:-}
tar czf "$out/bench.tgz" -C "$out" bench && rm -rf "$out/bench"
echo "done at t=$(( $(date +%s) - start ))s"
