#!/usr/bin/env bash
# A learning-rate sweep run from a fixed commit, so that code edited while it
# runs (hours) cannot mix two versions in one table:
#
#   bash scripts/run_sweep.sh EXPERIMENT [--config.KEY=VALUE ...]
#
# Checks out the current HEAD (committed code only) as a git worktree in
# .sweeps/<commit>/ and runs `python -m experiments.sweep EXPERIMENT` from
# there, writing into this checkout's experiments/results/EXPERIMENT_sweep/
# (WORKDIR to change it). Each run records the commit it came from. Stop it
# at any time; the same command continues where it stopped (finished runs are
# never recomputed), also from a later commit. Worktrees no sweep uses any
# more are removed by `bash scripts/prune_sweeps.sh`.
set -euo pipefail
experiment="${1:?usage: bash scripts/run_sweep.sh EXPERIMENT [--config.KEY=VALUE ...]}"
shift
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
commit="$(git rev-parse HEAD)"
tree="$ROOT/.sweeps/$commit"
# Sweeps started together share the worktree: one creates it, under a lock.
mkdir -p "$ROOT/.sweeps"
exec 9>"$ROOT/.sweeps/.lock"
flock 9
if [ ! -d "$tree" ]; then
  git worktree add --detach "$tree" "$commit" >&2
fi
# Held (shared) for as long as the sweep runs: scripts/prune_sweeps.sh
# removes only worktrees whose lock nobody holds. Taken before the global
# lock is released, so a prune cannot remove the tree between the two.
exec 8>"$ROOT/.sweeps/$commit.lock"
flock -s 8
flock -u 9
exec 9>&-
workdir="${WORKDIR:-$ROOT/experiments/results/${experiment}_sweep}"
echo "sweep $experiment from commit $commit into $workdir" >&2
cd "$tree"
# The worktree's packages, not the editable install of this checkout.
PYTHONPATH="$tree" exec python -m experiments.sweep "$experiment" \
  --workdir "$workdir" "$@"
