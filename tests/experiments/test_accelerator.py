"""The accelerator loan's one command (scripts/accelerator.sh,
experiments/accelerator.py), rehearsed on CPU at tiny sizes in a copy of
the repository, as a loan runs it."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile

import pytest

from experiments import accelerator
from tests.conftest import ROOT

# Table II's programs shrunk: 8 steps, step-downs at 6 and 7, evaluations
# at 4 and 8 on 200 examples, checkpoints every 4 steps.
TINY = ['--config.batch_size=16', '--config.eval_batch_size=100',
        '--config.max_eval_examples=200', '--config.num_steps=8',
        '--config.eval_every=4', '--config.log_every=2',
        '--config.lr_stepvalues=(6,7)', '--config.checkpoint_every=4']


def _probe(rates, startup=10.0):
  return {'cifar10_full': {'startup_s': startup, 'steps_per_second': rates,
                           'seeds_vmapped': True},
          'cifar10_full_50k': {'startup_s': startup,
                               'steps_per_second': rates,
                               'seeds_vmapped': True}}


class _Args:
  out = '/tmp'
  train_args = ''
  seeds = 5
  probe_steps = 200


@pytest.mark.parametrize('seconds,train,deferred', [
    # At 200 steps/s and 10 s of start-up, x 1.15: 414 s for a 70k program,
    # 356.5 s for a 60k one.
    (1000, ['cifar10_full sgd,sgd+layer', 'cifar10_full_50k sgd,sgd+layer',
            'cifar10_full adagrad,adagrad+layer'], []),
    # The first comparison always trains (resumable from its checkpoints in
    # a later loan); what fits beside it too.
    (400, ['cifar10_full sgd,sgd+layer', 'cifar10_full_50k sgd,sgd+layer'],
     ['cifar10_full adagrad,adagrad+layer']),
    (100, ['cifar10_full sgd,sgd+layer'],
     ['cifar10_full_50k sgd,sgd+layer', 'cifar10_full adagrad,adagrad+layer']),
])
def test_the_plan_trains_the_comparisons_that_fit(seconds, train, deferred):
  rates = {m: 200.0 for m in ('sgd', 'sgd+layer', 'adagrad',
                              'adagrad+layer')}
  plan = accelerator.plan_table2(_Args(), _probe(rates), seconds)
  shown = lambda entries: [f'{e["experiment"]} {",".join(e["methods"])}'
                           for e in entries]
  assert shown(plan['train']) == train
  assert shown(plan['deferred']) == deferred
  projected = {f'{e["experiment"]} {e["methods"][0]}': e['projected_s']
               for e in plan['train'] + plan['deferred']}
  assert projected == pytest.approx({
      'cifar10_full sgd': 1.15 * (10 + 70_000 / 200),
      'cifar10_full_50k sgd': 1.15 * (10 + 60_000 / 200),
      'cifar10_full adagrad': 1.15 * (10 + 70_000 / 200)}, abs=0.1)


def test_the_slowest_method_of_a_pair_sets_its_time():
  rates = {'sgd': 400.0, 'sgd+layer': 100.0, 'adagrad': 400.0,
           'adagrad+layer': 400.0}
  plan = accelerator.plan_table2(_Args(), _probe(rates, startup=0.0), 10_000)
  assert plan['train'][0]['projected_s'] == pytest.approx(
      1.15 * 70_000 / 100, abs=0.1)
  assert plan['train'][2]['projected_s'] == pytest.approx(
      1.15 * 70_000 / 400, abs=0.1)


def test_a_snapshot_taken_while_the_jobs_write(tmp_path, monkeypatch):
  """results.tgz is refreshed while training writes: a checkpoint being
  saved (orbax's temporaries) is left out, an older one deleted after it was
  listed is skipped (it failed the loan's script once), TensorBoard files
  are left out, and what is there arrives under experiments/results/."""
  work = tmp_path / 'cifar10_full'
  ckpt = 'checkpoints/sgd_seed1'
  for name in ('runs/sgd_seed0.json', 'tensorboard/events.out',
               f'{ckpt}/4/state/data', f'{ckpt}/8/state/data',
               f'{ckpt}/12.orbax-checkpoint-tmp/state.orbax-checkpoint-tmp/d'):
    (work / name).parent.mkdir(parents=True, exist_ok=True)
    (work / name).write_text(name)
  real_walk = os.walk

  def walk(top, *args, **kwargs):
    for here, dirs, files in real_walk(top, *args, **kwargs):
      if here.endswith(os.path.join(ckpt, '4', 'state')):
        shutil.rmtree(os.path.dirname(here))  # listed, then replaced by 8
      yield here, dirs, files

  monkeypatch.setattr(accelerator.os, 'walk', walk)
  out = tmp_path / 'out'
  out.mkdir()
  accelerator.snapshot([str(work), str(tmp_path / 'not_started')], str(out))
  assert sorted(os.listdir(out)) == ['results.tgz']
  with tarfile.open(out / 'results.tgz') as tar:
    files = {m.name: tar.extractfile(m).read().decode()
             for m in tar.getmembers() if m.isfile()}
  root = 'experiments/results/cifar10_full'
  assert files == {f'{root}/runs/sgd_seed0.json': 'runs/sgd_seed0.json',
                   f'{root}/{ckpt}/8/state/data': f'{ckpt}/8/state/data'}


def test_accelerator_script_rehearsed_on_cpu(cifar_dir, cifar_cache,
                                             tmp_path):
  """scripts/accelerator.sh end to end, tiny, in a copy of this checkout:
  the probe, a plan, both Table II experiments trained into $RESULTS_DIR
  (2 seeds, 4 + 2 worker processes), results.tgz unpacking to
  experiments/results/<experiment>/, both benchmarks through
  benchmarks.repeated in bench.tgz, and code.sha256 hashing this code."""
  del cifar_cache  # decoded once into $LAYERLR_CACHE, which the script reads
  out, results = tmp_path / 'out', tmp_path / 'results'
  ours = os.path.join(ROOT, 'experiments', 'results')
  before = sorted(os.listdir(ours))
  env = dict(os.environ, RESULTS_DIR=str(results), TRAIN_ARGS=' '.join(TINY),
             ACCELERATOR_ARGS='--seeds 2 --probe-steps 4 '
             '--bench-repetitions 1 --bench-seconds 900',
             TRAIN_STEP_ARGS='--quick --models lenet --repeats 2 --seeds 2',
             OVERHEAD_ARGS='--quick --trees lenet,stacked_48 --repeats 2',
             PATH=os.path.dirname(sys.executable) + os.pathsep +
             os.environ['PATH'])
  # The time box is the loan's plan, not a test deadline: large enough that
  # everything fits on any machine; the subprocess timeout guards a hang.
  proc = subprocess.run(
      ['bash', os.path.join(ROOT, 'scripts', 'accelerator.sh'), str(out),
       '3000', cifar_dir], cwd=tmp_path, env=env, capture_output=True,
      text=True, timeout=3600, check=False)
  log = (out / 'device.log').read_text()
  assert proc.returncode == 0, log[-4000:]
  assert 'cifar10_full exit 0' in log and 'cifar10_full_50k exit 0' in log
  assert 'done at' in log, log[-4000:]
  assert sorted(os.listdir(ours)) == before  # the checkout's are untouched

  plan = json.loads((out / 'plan.json').read_text())
  assert [(e['experiment'], e['methods']) for e in plan['train']] == [
      (experiment, list(pair)) for experiment, pair in accelerator.TABLE2]
  assert plan['deferred'] == [] and plan['seeds'] == 2
  assert len(plan['commit']) == 40
  for experiment, rates in (('cifar10_full', 4), ('cifar10_full_50k', 2)):
    probe = plan['probe'][experiment]
    assert len(probe['steps_per_second']) == rates
    assert all(r > 0 for r in probe['steps_per_second'].values())
    assert (out / 'probe' / f'{experiment}.json').is_file()

  unpacked = tmp_path / 'unpacked'
  with tarfile.open(out / 'results.tgz') as tar:
    tar.extractall(unpacked, filter='data')
  for experiment, methods in (
      ('cifar10_full', ['sgd', 'sgd+layer', 'adagrad', 'adagrad+layer']),
      ('cifar10_full_50k', ['sgd', 'sgd+layer'])):
    folder = unpacked / 'experiments' / 'results' / experiment
    payload = json.loads((folder / 'results.json').read_text())
    assert payload['experiment'] == experiment
    assert [(r['method'], r['seed']) for r in payload['runs']] == [
        (m, s) for m in methods for s in (0, 1)]
    assert payload['eval_steps'] == [4, 8]
    assert payload['config']['num_seeds'] == 2
    assert all(r['steps_per_second'] > 0 for r in payload['runs'])
    assert (folder / 'table.md').is_file()
    assert sorted(os.listdir(folder / 'workers')) == [
        f'worker{i}.log' for i in range(len(methods))]
    assert not (folder / 'tensorboard').exists()

  table2 = (out / 'table2.md').read_text()
  assert table2 == (results / 'table2.md').read_text()
  assert table2.count(' | 2 vs 2 | ') == 3 and 'not run' not in table2

  with tarfile.open(out / 'bench.tgz') as tar:
    for name in ('bench/train_step_cpu.json', 'bench/overhead_cpu.json'):
      payload = json.load(tar.extractfile(name))
      assert payload['repetitions'] == 1 and len(payload['each']) == 1
      optimizers = {c['optimizer'] for c in payload['cases']}
      assert 'optax.clip_by_global_norm+sgd' in optimizers, optimizers
      for case in payload['cases']:
        assert case['ratio_min'] <= case['ratio'] <= case['ratio_max']
    overhead = json.load(tar.extractfile('bench/overhead_cpu.json'))
    assert {c['tree'] for c in overhead['cases']} == {'lenet', 'stacked_48'}
    assert 'layerlr_optax.sgd[stacked]' in {c['optimizer']
                                            for c in overhead['cases']}

  hashes = dict(line.split()[::-1]
                for line in (out / 'code.sha256').read_text().splitlines())
  assert 'layerlr_optax/_src/transform.py' in hashes
  assert 'benchmarks/repeated.py' in hashes
  for path, digest in hashes.items():
    with open(os.path.join(ROOT, path), 'rb') as f:
      assert hashlib.sha256(f.read()).hexdigest() == digest, path
