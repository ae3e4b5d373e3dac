#!/usr/bin/env bash
# A learning-rate sweep run from a fixed commit, so that code edited while it
# runs (hours) cannot mix two versions in one table:
#
#   bash scripts/run_sweep.sh EXPERIMENT [--config.KEY=VALUE ...]
#
# EXPERIMENT is one of experiments/configs/ *as committed*, or the path of a
# config file of your own (my_experiment.py; experiments/README.md, "Your
# own model"), which is read from where it is. Checks out the current HEAD
# (committed code only) as a git worktree in .sweeps/<commit>/ and runs
# `python -m experiments.sweep EXPERIMENT` from there, writing into
# workdirs/<EXPERIMENT>_sweep/ of this checkout (WORKDIR to change it; the
# project's published sweeps are extended with
# WORKDIR=experiments/results/<EXPERIMENT>_sweep). Each run records the
# commit it came from. Stop it at any time; the same command continues
# where it stopped (finished runs are never recomputed), also from a later
# commit. Worktrees no sweep uses any more are removed by
# `bash scripts/prune_sweeps.sh`.
set -euo pipefail
experiment="${1:?usage: bash scripts/run_sweep.sh EXPERIMENT [--config.KEY=VALUE ...]}"
shift
caller="$PWD"  # relative paths you give are relative to here
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
commit="$(git rev-parse HEAD)"
if [[ "$experiment" == *.py ]]; then
  # A config file of your own: read from where it is, whatever the commit.
  case "$experiment" in /*) ;; *) experiment="$caller/$experiment" ;; esac
  if [ ! -f "$experiment" ]; then
    echo "error: config file $experiment not found" >&2
    exit 2
  fi
  name="$(basename "$experiment" .py)"
elif ! git cat-file -e "$commit:experiments/configs/$experiment.py" 2>/dev/null; then
  if [ -f "$ROOT/experiments/configs/$experiment.py" ]; then
    echo "error: experiments/configs/$experiment.py is not committed. This" \
      "script runs committed code only (a sweep takes hours; edits made" \
      "meanwhile must not mix two versions in one table): commit it first," \
      "run 'python -m experiments.sweep $experiment --workdir DIR' from" \
      "this checkout, or pass a config file of your own by its path." >&2
  else
    echo "error: unknown experiment '$experiment'; committed:" \
      "$(git ls-tree --name-only "$commit" experiments/configs/ \
        | sed -n 's|experiments/configs/\([a-z0-9][a-z0-9_]*\)\.py$|\1|p' \
        | tr '\n' ' ')(or the path of a config file of your own)" >&2
  fi
  exit 2
else
  name="$experiment"
fi
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
workdir="${WORKDIR:-$ROOT/workdirs/${name}_sweep}"
case "$workdir" in /*) ;; *) workdir="$caller/$workdir" ;; esac
echo "sweep $name from commit $commit into $workdir" >&2
cd "$tree"
# The worktree's packages, not the editable install of this checkout.
PYTHONPATH="$tree" exec python -m experiments.sweep "$experiment" \
  --workdir "$workdir" "$@"
