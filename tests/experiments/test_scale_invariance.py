"""experiments.scale_invariance: the factor under batch size and reduction."""

import json

import numpy as np

from experiments import scale_invariance


def test_summed_loss_scales_the_norm_by_the_batch_size(mnist_dir, tmp_path):
  assert scale_invariance.main([
      '--workdir', str(tmp_path), '--batch_sizes=8,32', '--mid_step=3',
      '--batches=2', '--config.data_source=local',
      f'--config.data_dir={mnist_dir}']) == 0
  payload = json.loads((tmp_path / 'factors.json').read_text())
  rows = payload['rows']
  assert {r['batch_size'] for r in rows} == {8, 32}
  assert {r['step'] for r in rows} == {0, 3}
  by_key = {(r['batch_size'], r['step'], r['reduction'], r['layer']): r
            for r in rows}
  for (batch, step, reduction, layer), row in by_key.items():
    if reduction != 'sum':
      continue
    mean = by_key[(batch, step, 'mean', layer)]
    # Same parameters and batches: the summed gradient is B times the mean's.
    np.testing.assert_allclose(row['grad_norm'], batch * mean['grad_norm'],
                               rtol=1e-4)
    assert row['factor'] < mean['factor']
  assert '| 0 | mean | 8 |' in (tmp_path / 'factors.md').read_text()
