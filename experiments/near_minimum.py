"""The layer factor near a minimum: which optimizers still converge.

``python -m experiments.near_minimum --workdir DIR [--steps N]``

eq. 9's factor ``1 + log(1 + 1/||g||)`` grows as the gradient vanishes (up to
~44.7 in float32). For optimizers whose step shrinks with the gradient (SGD)
the step ``f * lr * g`` still goes to zero; for those whose step does not
(Adam, sign methods, ...) the factor inflates the step exactly where it must
become small. This runs every optimizer of `OPTIMIZERS` plain, with
`layerlr_optax.layerwise` (the paper: uncapped) and with each cap of
``--caps`` (``max_factor``), on a 3-parameter parabola and the 2-D Rosenbrock
function, in float32 and complex64, for ``--steps`` steps, and records the
final distance to the minimiser. Converged: within ``--tolerance`` (3e-2) in
every coordinate at the end. Writes ``DIR/near_minimum.json`` and
``DIR/near_minimum.md``.

The complex problems are the real problems applied to the real and the
imaginary parts (minimiser 1+1j for Rosenbrock, 0 for the parabola); as optax
expects, the optimizers receive the conjugate of JAX's gradient.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

import layerlr_optax
from experiments.lib import fileio
from experiments.lib import provenance

# The parabola's curvatures: a well-conditioned and a stiff direction.
CURVATURES = jnp.array([1.0, 10.0, 100.0])


def parabola(x):
  return jnp.sum(CURVATURES * x**2)


def rosenbrock(x):
  return (1.0 - x[0])**2 + 100.0 * (x[1] - x[0]**2)**2


PROBLEMS = {
    # name: (function, start, minimiser)
    'parabola': (parabola, np.array([1.0, 1.0, 1.0]), np.zeros(3)),
    'rosenbrock': (rosenbrock, np.array([-1.2, 1.0]), np.ones(2)),
}

# Usual rates for these scales; whether the plain optimizer converges with
# them is the table's "plain" column (not all do on Rosenbrock).
OPTIMIZERS: dict[str, Callable[[], optax.GradientTransformation]] = {
    'sgd': lambda: optax.sgd(1e-3),
    'sgd (momentum 0.9)': lambda: optax.sgd(1e-3, momentum=0.9),
    'nesterov': lambda: optax.sgd(1e-3, momentum=0.9, nesterov=True),
    'adagrad': lambda: optax.adagrad(0.1),
    'rmsprop': lambda: optax.rmsprop(1e-3),
    'adam': lambda: optax.adam(0.1),
    'adamw': lambda: optax.adamw(0.1, weight_decay=0.0),
    'amsgrad': lambda: optax.amsgrad(0.1),
    'yogi': lambda: optax.yogi(0.1),
    'lion': lambda: optax.lion(1e-3),
    'sign_sgd': lambda: optax.chain(optax.scale_by_sign(), optax.scale(-1e-3)),
}


def _complex(fn):
  return lambda z: fn(jnp.real(z)) + fn(jnp.imag(z))


def run(problem: str, optimizer: optax.GradientTransformation, dtype,
        steps: int) -> np.ndarray:
  """The final parameters after `steps` steps."""
  fn, start, _ = PROBLEMS[problem]
  if jnp.issubdtype(dtype, jnp.complexfloating):
    fn = _complex(fn)
    x0 = jnp.asarray(start + 1j * start, dtype)
  else:
    x0 = jnp.asarray(start, dtype)
  params = {'x': x0}
  loss = lambda p: fn(p['x'])

  def step(carry, _):
    params, state = carry
    grads = jax.tree.map(jnp.conj, jax.grad(loss)(params))
    updates, state = optimizer.update(grads, state, params)
    return (optax.apply_updates(params, updates), state), None

  (params, _), _ = jax.jit(
      lambda p: jax.lax.scan(step, (p, optimizer.init(p)), None,
                             length=steps))(params)
  return np.asarray(params['x'])


def distance(problem: str, x: np.ndarray) -> float:
  minimiser = PROBLEMS[problem][2]
  if np.iscomplexobj(x):
    return float(max(np.max(np.abs(x.real - minimiser)),
                     np.max(np.abs(x.imag - minimiser))))
  return float(np.max(np.abs(x - minimiser)))


def measure(steps: int, caps, tolerance: float) -> list[dict]:
  rows = []
  variants = [('plain', None, False), ('layerwise', None, True)] + [
      (f'layerwise, max_factor={c:g}', c, True) for c in caps]
  for name, make in OPTIMIZERS.items():
    for problem in PROBLEMS:
      for dtype in ('float32', 'complex64'):
        for variant, cap, layered in variants:
          opt = make()
          if layered:
            opt = layerlr_optax.layerwise(opt, max_factor=cap)
          x = run(problem, opt, jnp.dtype(dtype), steps)
          d = distance(problem, x)
          rows.append({'optimizer': name, 'problem': problem, 'dtype': dtype,
                       'variant': variant, 'distance': d if np.isfinite(d)
                       else None,
                       'converged': bool(np.isfinite(d) and d < tolerance)})
  return rows


def markdown(rows: list[dict], tolerance: float, steps: int) -> str:
  variants = list(dict.fromkeys(r['variant'] for r in rows))
  lines = [f'Final distance to the minimiser after {steps} steps (max over '
           f'coordinates); **bold**: not converged (>= {tolerance:g}).', '',
           '| optimizer | problem | dtype | ' + ' | '.join(variants) + ' |',
           '|---|---|---|' + '---|' * len(variants)]
  keys = list(dict.fromkeys((r['optimizer'], r['problem'], r['dtype'])
                            for r in rows))
  for key in keys:
    cells = []
    for variant in variants:
      r, = [r for r in rows if (r['optimizer'], r['problem'], r['dtype'],
                                r['variant']) == (*key, variant)]
      text = 'nan' if r['distance'] is None else f'{r["distance"]:.1e}'
      cells.append(text if r['converged'] else f'**{text}**')
    lines.append('| ' + ' | '.join(key) + ' | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m experiments.near_minimum',
                                   description=__doc__.split('\n\n')[0])
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--steps', type=int, default=10_000)
  parser.add_argument('--caps', default='2,4')
  parser.add_argument('--tolerance', type=float, default=3e-2)
  args = parser.parse_args(argv)
  caps = [float(c) for c in args.caps.split(',') if c]
  rows = measure(args.steps, caps, args.tolerance)
  os.makedirs(args.workdir, exist_ok=True)
  fileio.write_json(os.path.join(args.workdir, 'near_minimum.json'), {
      'experiment': 'near_minimum', 'steps': args.steps,
      'tolerance': args.tolerance, 'caps': caps, 'rows': rows,
      'versions': provenance.versions(), 'commit': provenance.code_commit()})
  table = markdown(rows, args.tolerance, args.steps)
  fileio.write_atomic(os.path.join(args.workdir, 'near_minimum.md'), table)
  print(table)
  return 0


if __name__ == '__main__':
  sys.exit(main())
