#!/usr/bin/env bash
# The test suite: sets up ./.venv if needed, then runs pytest (unit tests,
# doctests, the sharding check on 8 simulated devices, tiny end-to-end runs
# on generated data and the notebooks). Passes on a fresh clone: the tests
# that need the real MNIST/CIFAR-10 files run when $LAYERLR_DATA (default
# ../shared/data) holds them and skip otherwise; LAYERLR_REQUIRE_REAL_DATA=1
# (.ci/run) makes them required.
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
# The linter and the type checker first (seconds); configured in
# pyproject.toml.
ruff check --quiet . && echo "ruff: clean"
mypy
# Two workers (the machine's cores). Tests sharing a module-scoped fixture
# (a reference run, the kill-anywhere check) carry one xdist_group mark and
# stay on one worker, so the fixture runs once.
exec python -m pytest -q -n 2 --dist loadgroup --durations=25 "$@"
