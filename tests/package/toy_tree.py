"""A toy parameter tree of three layers, shared by the package tests."""

import numpy as np

from tests.package import reference

# Three layers whose gradients differ by orders of magnitude, as in a deep net.
SHAPES = {
    'conv1/kernel': (3, 3, 1, 4), 'conv1/bias': (4,),
    'dense/kernel': (36, 10), 'dense/bias': (10,),
    'head/kernel': (10, 3),
}
SCALES = {'conv1': 1e-4, 'dense': 0.05, 'head': 30.0}
MODULE_LAYERS = [['conv1/bias', 'conv1/kernel'], ['dense/bias', 'dense/kernel'],
                 ['head/kernel']]


def nest(flat):
  out = {}
  for name, value in flat.items():
    module, leaf = name.split('/')
    out.setdefault(module, {})[leaf] = value
  return out


def flatten(tree):
  return {f'{m}/{l}': np.asarray(v, np.float64)
          for m, leaves in tree.items() for l, v in leaves.items()}


def random_grads(seed=0, dtype=np.float32):
  rng = np.random.default_rng(seed)
  return {name: (rng.standard_normal(shape) * SCALES[name.split('/')[0]]
                 ).astype(dtype) for name, shape in SHAPES.items()}


def expected_scaled(grads, layers):
  f = reference.layer_factors(grads, layers)
  return {k: g.astype(np.float64) * f[k] for k, g in grads.items()}


def assert_tree_close(actual, expected_flat, rtol=1e-5, atol=0.0):
  actual_flat = flatten(actual)
  assert set(actual_flat) == set(expected_flat)
  for k in expected_flat:
    np.testing.assert_allclose(actual_flat[k], expected_flat[k], rtol=rtol,
                               atol=atol, err_msg=k)
