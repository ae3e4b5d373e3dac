"""The experiments reproduce committed numbers exactly.

tests/experiments/golden/mnist_lenet_short.json holds short mnist_lenet runs, first made
by the experiments code before its restructure (issue #13); regenerated
(``python -m tests.test_regression WHY``) only for a deliberate change of
what they compute, recorded in its "what". The same config must
give the same numbers, bit for bit, on the same software versions (XLA's
float results can change between versions, so the comparison is exact only
when the recorded versions match; otherwise to float tolerance).
"""

import json
import os

import jax
import numpy as np
import optax

from experiments.lib import fileio
from experiments.lib import provenance
from experiments import configs
from experiments.lib import train
from tests.conftest import ROOT

GOLDEN = os.path.join(ROOT, 'tests', 'experiments', 'golden', 'mnist_lenet_short.json')
KEYS = ('test_error', 'test_top5_error', 'test_loss', 'train_loss',
        'learning_rate', 'factor_steps', 'layer_factors')


def test_short_run_regenerates_the_committed_numbers(real_mnist_dir,
                                                      tmp_path):
  with open(GOLDEN) as f:
    golden = json.load(f)
  methods = 'sgd+layer,nag,adagrad+layer,lars'
  config = configs.get_config('mnist_lenet')
  config.update(dict(data_source='local', data_dir=real_mnist_dir, num_seeds=1,
                     num_steps=40, eval_every=20, log_every=10,
                     max_eval_examples=2000, methods=methods,
                     seed_parallelism='sequential'))
  results = train.train_and_evaluate(config, str(tmp_path / 'w'))
  assert results.eval_steps == golden['eval_steps']
  exact = (golden['versions']['jax'] == jax.__version__
           and golden['versions']['optax'] == optax.__version__)
  reference = {(r['method'], r['seed']): r for r in golden['runs']}
  for run in results.runs:
    expected = reference[(run.method, run.seed)]
    for key in KEYS:
      actual = getattr(run, key)
      if exact:
        assert actual == expected[key], (run.method, key)
      elif key == 'layer_factors':
        for layer, values in expected[key].items():
          np.testing.assert_allclose(actual[layer], values, rtol=1e-4)
      else:
        np.testing.assert_allclose(actual, expected[key], rtol=1e-3,
                                   atol=0.2, err_msg=f'{run.method} {key}')


def regenerate(why: str, data_dir: str) -> None:
  """Rewrites the golden file with the current code (its "command"), for a
  deliberate change of what these runs compute; `why` is recorded."""
  import shlex
  import tempfile
  with open(GOLDEN) as f:
    golden = json.load(f)
  overrides = [a for a in shlex.split(golden['command'])
               if a.startswith('--config.')]
  config = configs.apply_overrides(configs.get_config('mnist_lenet'),
                                   overrides)
  config.data_dir = data_dir
  with tempfile.TemporaryDirectory() as workdir:
    results = train.train_and_evaluate(config, workdir)
  golden.update(
      what=f'Short mnist_lenet runs (commit {provenance.code_commit()}): {why} '
      'tests/experiments/test_regression.py reruns them and requires identical numbers.',
      versions=provenance.versions(), backend=jax.default_backend(),
      eval_steps=results.eval_steps,
      runs=[{'method': r.method, 'seed': r.seed,
             **{key: getattr(r, key) for key in KEYS}}
            for r in results.runs])
  fileio.write_json(GOLDEN, golden)


if __name__ == '__main__':
  # python -m tests.test_regression "WHY THE NUMBERS CHANGED" [DATA_DIR]
  import sys
  regenerate(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else
             os.path.join(ROOT, '..', 'shared', 'data', 'mnist'))
