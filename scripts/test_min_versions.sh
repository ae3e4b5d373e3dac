#!/usr/bin/env bash
# The package's own tests (not the experiments) at the oldest versions
# pyproject.toml declares: the oldest supported Python with exactly the
# lower bounds of jax/jaxlib and optax, and of what those tests import
# beyond them (chex, Flax, orbax, Equinox: the `frameworks` tests run
# here too), and nothing else of ours (no TensorFlow). The packages none of
# ours bounds are pinned by scripts/min_versions_constraints.txt. Sets up
# ./.venv-min (again only when the pins change) and runs pytest there;
# extra arguments go to pytest.
#
#   bash scripts/test_min_versions.sh
#
# Run by the test suite (tests/repository/test_packaging.py). PYTHON_MIN overrides the
# interpreter; by default python3.X (X from requires-python) on PATH or in
# pyenv.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${LAYERLR_MIN_VENV:-$ROOT/.venv-min}"
want_python="$(python3 scripts/min_versions.py --python)"
pins="$(python3 scripts/min_versions.py) $(python3 scripts/min_versions.py --frameworks)"
constraints="$ROOT/scripts/min_versions_constraints.txt"
if [ -z "${PYTHON_MIN:-}" ]; then
  # The first candidate that runs (a pyenv shim on PATH may not).
  candidates=("$(command -v "python$want_python" || true)")
  if command -v pyenv >/dev/null; then
    candidates+=($(ls -d "$(pyenv root)"/versions/"$want_python".*/bin/python"$want_python" 2>/dev/null | sort -rV))
  fi
  candidates+=($(ls -d "$HOME"/.pyenv/versions/"$want_python".*/bin/python"$want_python" 2>/dev/null | sort -rV))
  for candidate in "${candidates[@]}"; do
    if [ -n "$candidate" ] && "$candidate" --version >/dev/null 2>&1; then
      PYTHON_MIN="$candidate"
      break
    fi
  done
fi
if [ -z "${PYTHON_MIN:-}" ] || ! "$PYTHON_MIN" --version >/dev/null 2>&1; then
  echo "error: Python $want_python (the oldest pyproject.toml supports) was not found; install it (e.g. 'pyenv install $want_python') or set PYTHON_MIN=/path/to/python$want_python." >&2
  exit 2
fi
STAMP="$VENV/.layerlr-min-installed"
WANT="$("$PYTHON_MIN" --version 2>&1) $pins $(sha256sum "$constraints" | cut -c1-16)"
if [ ! -x "$VENV/bin/python" ] || [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "setup: $VENV with $("$PYTHON_MIN" --version 2>&1) and $pins" >&2
  rm -rf "$VENV"
  "$PYTHON_MIN" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  # shellcheck disable=SC2086
  "$VENV/bin/python" -m pip install -q -c "$constraints" $pins "pytest>=8" \
    "hypothesis>=6.100" >&2
  "$VENV/bin/python" -m pip install -q --no-deps -e "$ROOT" >&2
  echo "$WANT" > "$STAMP"
fi
"$VENV/bin/python" - <<'PY'
import sys, jax, jaxlib, optax, chex, flax, orbax.checkpoint, equinox
print(f'minimum versions: Python {sys.version.split()[0]}, jax {jax.__version__}, '
      f'jaxlib {jaxlib.__version__}, optax {optax.__version__}, chex {chex.__version__}, '
      f'flax {flax.__version__}, orbax-checkpoint {orbax.checkpoint.__version__}, '
      f'equinox {equinox.__version__}')
PY
# The package's tests, the frameworks ones included; the XLA fusion test
# asserts what holds at this version.
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/package \
  layerlr_optax "$@"
