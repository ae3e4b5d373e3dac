"""The benchmark harnesses run and write the documented JSON shape."""

import json

from benchmarks import designs
from benchmarks import overhead
from benchmarks import program
from benchmarks import report
from benchmarks import train_step
from benchmarks import trees


def test_trees_have_the_documented_sizes():
  assert trees.count('lenet') == (431_080, 8)
  assert trees.count('alexnet') == (60_965_224, 16)
  assert trees.count('resnet50') == (25_557_032, 161)
  for depth in (10, 100, 1000):
    n, leaves = trees.count(f'deep_mlp_{depth}')
    assert leaves == 2 * depth and abs(n - 4_000_000) < 40_000
  assert trees.count('stacked_48') == (trees.count('unrolled_48')[0], 4)


def test_overhead_json_shape(tmp_path):
  path = tmp_path / 'o.json'
  overhead.main(['--trees', 'lenet', '--optimizers',
                 'layerlr_optax.sgd,layerlr_optax.layerwise(optax.adam)',
                 '--repeats', '2', '--json', str(path)])
  payload = json.loads(path.read_text())
  assert payload['backend'] == 'cpu' and payload['device']
  names = [c['optimizer'] for c in payload['cases']]
  assert names == ['optax.sgd', 'layerlr_optax.sgd',
                   'layerlr_optax.layerwise(optax.adam)']
  for case in payload['cases']:
    assert case['tree'] == 'lenet' and case['baseline'] == 'optax.sgd'
    assert case['median_s'] > 0 and case['compile_s'] > 0
    assert abs(case['ratio'] * payload['cases'][0]['median_s'] -
               case['median_s']) < 1e-9


def test_train_step_json_shape(tmp_path):
  path = tmp_path / 't.json'
  train_step.main(['--models', 'lenet', '--repeats', '2', '--seeds', '2',
                   '--json', str(path)])
  payload = json.loads(path.read_text())
  assert [c['optimizer'] for c in payload['cases']] == [
      'optax.sgd', 'layerlr_optax.sgd', 'optax.clip_by_global_norm+sgd']
  seeds = payload['seeds']
  assert seeds['num_seeds'] == 2
  assert seeds['vmapped_s'] > 0 and seeds['sequential_s'] > 0
  assert abs(seeds['vmapped_over_sequential']
             - seeds['vmapped_s'] / seeds['sequential_s']) < 1e-12
  # The label names the faster of the two measured times.
  assert seeds['faster'] == ('vmapped' if seeds['vmapped_s']
                             < seeds['sequential_s'] else 'sequential')


def test_program_json_shape(tmp_path):
  path = tmp_path / 'p.json'
  program.main(['--trees', 'lenet', '--optimizers', 'layerlr_optax.sgd',
                '--json', str(path)])
  payload = json.loads(path.read_text())
  base, ours = payload['cases']
  assert (base['optimizer'], ours['optimizer']) == ('optax.sgd',
                                                    'layerlr_optax.sgd')
  # 8 leaves: one fused update each; the layer rate adds reductions.
  assert base['kernels'] >= 8 and ours['kernels'] > base['kernels']
  assert ours['ops'] > base['ops'] > 0
  assert ours['temp_bytes'] < 4 * 431_080 // 10  # no gradient-sized buffer


def test_count_kernels_reads_the_entry_computation():
  hlo = ('HloModule m\n\n%fused (p: f32[2]) -> f32[2] {\n'
         '  %p = f32[2]{0} parameter(0)\n'
         '  ROOT %m = f32[2]{0} multiply(%p, %p)\n}\n\n'
         'ENTRY %main (a: f32[2]) -> (f32[2], f32[]) {\n'
         '  %a = f32[2]{0} parameter(0)\n'
         '  %c = f32[] constant(0)\n'
         '  %f = f32[2]{0} fusion(%a), kind=kLoop, calls=%fused\n'
         '  %r = f32[] reduce(%f, %c), dimensions={0}, to_apply=%add\n'
         '  ROOT %t = (f32[2]{0}, f32[]) tuple(%f, %r)\n}\n')
  assert program.count_kernels(hlo) == 2


def test_designs_agree_and_report(tmp_path):
  path = tmp_path / 'd.json'
  # designs.bench asserts that every design computes the shipped update.
  designs.main(['--trees', 'lenet', '--repeats', '2', '--json', str(path)])
  payload = json.loads(path.read_text())
  assert {(c['family'], c['design']) for c in payload['cases']} == {
      ('sgd', 'optax.sgd'), ('sgd', 'shipped'), ('sgd', 'grouped'),
      ('sgd', 'flat'), ('adam', 'optax.adam'), ('adam', 'shipped'),
      ('adam', 'unbarriered')}
  by = {(c['family'], c['design']): c for c in payload['cases']}
  # Without the barrier the norm's g*g is a gradient-sized temporary.
  assert by[('adam', 'unbarriered')]['temp_bytes'] > 4 * 400_000
  assert by[('adam', 'shipped')]['temp_bytes'] < 4 * 40_000
  assert 'lenet, adam' in report.designs_tables(payload)


def test_repeated_merges_medians_and_ranges():
  """benchmarks.repeated.merge: per case the median of every float over the
  repetitions and the min-max of the ratios; a case a stopped repetition
  did not reach has fewer repetitions."""
  from benchmarks import repeated
  from benchmarks import report

  def payload(ratios, extra_case=True):
    cases = [{'tree': 'lenet', 'optimizer': 'optax.sgd', 'median_s': 1.0,
              'ratio': 1.0, 'compile_ratio': 1.0, 'compile_s': 0.5},
             {'tree': 'lenet', 'optimizer': 'layerlr_optax.sgd',
              'median_s': ratios[0], 'ratio': ratios[0],
              'compile_ratio': ratios[1]}]
    if extra_case:
      cases.append({'tree': 'alexnet', 'optimizer': 'optax.sgd',
                    'median_s': 2.0, 'ratio': 1.0, 'compile_ratio': 1.0,
                    'compile_s': 0.5})
    return {'benchmark': 'overhead', 'repeats': 2, 'cases': cases}

  merged = repeated.merge([payload((1.1, 2.0)), payload((1.3, 3.0)),
                           payload((1.0, 2.5), extra_case=False)])
  assert merged['repetitions'] == 3 and len(merged['each']) == 3
  ours = merged['cases'][1]
  assert (ours['ratio'], ours['ratio_min'], ours['ratio_max']) == (
      1.1, 1.0, 1.3)
  assert (ours['compile_ratio'], ours['compile_ratio_min'],
          ours['compile_ratio_max']) == (2.5, 2.0, 3.0)
  assert ours['median_s'] == 1.1 and ours['repetitions'] == 3
  assert merged['cases'][2]['repetitions'] == 2
  tables = report.overhead_tables({**merged, 'backend': 'cpu',
                                   'device': 'cpu', 'host': 'h', 'jax': '0'})
  assert '| layerlr_optax.sgd | 1.10 (1.00-1.30) |' in tables
  assert 'Repeated in 3 fresh processes' in tables


def test_family_against_peers_json_and_table(tmp_path):
  """Each per-layer rule is timed beside its optax peer in one process, and
  the report's family table is their ratio (of each repetition, median and
  range over fresh processes)."""
  from benchmarks import common
  path = tmp_path / 'f.json'
  names = ['optax.lars', 'layerlr_optax.lars[leaf]', 'optax.adam',
           'layerlr_optax.adalayer']
  overhead.main(['--trees', 'lenet', '--optimizers', ','.join(names),
                 '--repeats', '2', '--json', str(path)])
  payload = json.loads(path.read_text())
  by = {c['optimizer']: c for c in payload['cases']}
  table = report.family_table(payload)
  want = by['layerlr_optax.lars[leaf]']['median_s'] / by['optax.lars'][
      'median_s']
  row = next(line for line in table.splitlines()
             if line.startswith('| layerlr_optax.lars[leaf] '))
  assert row.split(' | ')[2].strip(' |') == f'{want:.2f}', (row, want)
  assert table.index('update time') < table.index('compile time')
  assert set(common.PEERS.values()) <= set(common.OPTIMIZERS)
  # Two repetitions: median and (min-max) of the per-process ratios.
  twice = {**payload, 'each': [payload, payload]}
  assert f'{want:.2f} ({want:.2f}-{want:.2f})' in report.family_table(twice)
