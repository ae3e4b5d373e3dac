#!/usr/bin/env bash
# Removes the git worktrees that scripts/run_sweep.sh left in .sweeps/ (one
# per commit a sweep ran from, ~20-30 MB each) that no sweep uses now:
#
#   bash scripts/prune_sweeps.sh [--dry-run]
#
# A worktree is in use while a run_sweep.sh holds its lock
# (.sweeps/<commit>.lock) or while any process has its working directory
# inside it (sweeps started before the lock existed). Those are kept. Only
# the worktrees are removed: the sweeps' results live in the checkout's
# experiments/results/ (or their WORKDIR), never in .sweeps/.
set -euo pipefail
dry_run=0
case "${1:-}" in
  '') ;;
  --dry-run) dry_run=1 ;;
  *) echo "usage: bash scripts/prune_sweeps.sh [--dry-run]" >&2; exit 2 ;;
esac
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
sweeps="$ROOT/.sweeps"
if [ ! -d "$sweeps" ]; then
  echo "no .sweeps/ folder: nothing to prune"
  exit 0
fi
# No run_sweep.sh may create or claim a worktree while we look.
exec 9>"$sweeps/.lock"
flock 9

# The working directories of every process we can see.
cwds="$(for p in /proc/[0-9]*; do readlink "$p/cwd" 2>/dev/null || true; done)"

removed=0 kept=0
for tree in "$sweeps"/*/; do
  [ -d "$tree" ] || continue
  tree="${tree%/}"
  commit="$(basename "$tree")"
  lock="$sweeps/$commit.lock"
  if [ -e "$lock" ] && ! flock -n -x "$lock" true; then
    echo "kept $commit: a sweep holds it ($lock)"
    kept=$((kept + 1))
    continue
  fi
  in_use=0
  while IFS= read -r dir; do
    case "$dir" in "$tree" | "$tree"/*) in_use=1 ;; esac
  done <<< "$cwds"
  if [ "$in_use" = 1 ]; then
    echo "kept $commit: a process runs in it"
    kept=$((kept + 1))
    continue
  fi
  size="$(du -sh "$tree" 2>/dev/null | cut -f1)"
  if [ "$dry_run" = 1 ]; then
    echo "would remove $commit ($size)"
  else
    git worktree remove --force "$tree"
    rm -f "$lock"
    echo "removed $commit ($size)"
  fi
  removed=$((removed + 1))
done
[ "$dry_run" = 1 ] || git worktree prune
echo "$([ "$dry_run" = 1 ] && echo 'would remove' || echo removed) $removed worktree(s), kept $kept"
