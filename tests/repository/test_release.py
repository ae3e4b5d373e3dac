"""Release readiness, as far as it can be checked without GitHub or PyPI:
the workflows parse and call the repository's own commands (the README's
test command among them), a release publishes only a tag that names the
version, the version lives in one place, and CITATION.cff is valid and
agrees with pyproject.toml. (The built wheel's and sdist's contents are
checked in test_packaging.py.)"""

import os
import re
import subprocess
import sys
import tomllib

import yaml

import layerlr_optax
from tests.conftest import ROOT

WORKFLOWS = os.path.join(ROOT, '.github', 'workflows')


def _workflow(name):
  with open(os.path.join(WORKFLOWS, name)) as f:
    return yaml.safe_load(f)


def _runs(workflow):
  """Every `run:` command of every job, by job."""
  return {job: [step['run'] for step in spec['steps'] if 'run' in step]
          for job, spec in workflow['jobs'].items()}


def _pyproject():
  with open(os.path.join(ROOT, 'pyproject.toml'), 'rb') as f:
    return tomllib.load(f)


def _on(workflow):
  # YAML 1.1 reads the key `on` as True.
  return workflow.get('on', workflow.get(True))


def test_ci_runs_the_readme_test_command_on_every_supported_python():
  ci = _workflow('ci.yml')
  with open(os.path.join(ROOT, 'README.md')) as f:
    readme = f.read()
  runs = _runs(ci)
  assert runs['tests'] == ['bash scripts/test.sh']
  assert 'bash scripts/test.sh' in readme
  pythons = ci['jobs']['tests']['strategy']['matrix']['python']
  oldest = _pyproject()['project']['requires-python'].removeprefix('>=')
  assert oldest in pythons, (oldest, pythons)
  assert all(tuple(map(int, p.split('.'))) >= tuple(map(int, oldest.split(
      '.'))) for p in pythons)
  assert len(pythons) >= 3
  # Within the clean-clone limit the README states for CI.
  assert ci['jobs']['tests']['timeout-minutes'] <= 90


def test_ci_runs_the_minimum_versions_and_the_docs_build_with_warnings():
  runs = _runs(_workflow('ci.yml'))
  assert runs['minimum-versions'] == ['bash scripts/test_min_versions.sh']
  docs = ' '.join(runs['docs'])
  assert '.[docs]' in docs
  assert re.search(r'sphinx -W .*docs', docs), docs
  # The Read the Docs build is the same: warnings fail it.
  with open(os.path.join(ROOT, '.readthedocs.yaml')) as f:
    rtd = yaml.safe_load(f)
  assert rtd['sphinx']['fail_on_warning'] is True


def test_every_file_a_workflow_calls_exists():
  for name in os.listdir(WORKFLOWS):
    for job, commands in _runs(_workflow(name)).items():
      for command in commands:
        for path in re.findall(r'(scripts/[\w./-]+)', command):
          assert os.path.exists(os.path.join(ROOT, path)), (name, job, path)


def test_release_publishes_a_checked_build_of_a_version_tag_only():
  release = _workflow('release.yml')
  assert _on(release) == {'push': {'tags': ['v*']}}
  build = ' && '.join(_runs(release)['build'])
  # The tag is checked before anything is built, the build before upload.
  order = [build.index(s) for s in ('check_version.py', 'python -m build',
                                    'twine check --strict')]
  assert order == sorted(order), build
  publish = release['jobs']['publish']
  assert publish['needs'] == 'build'
  # Trusted publishing: an OIDC token for the publishing job alone, no
  # password or API token anywhere.
  assert publish['permissions'] == {'id-token': 'write'}
  assert release['permissions'] == {'contents': 'read'}
  steps = [s.get('uses', '') for s in publish['steps']]
  assert any(s.startswith('pypa/gh-action-pypi-publish') for s in steps)
  text = open(os.path.join(WORKFLOWS, 'release.yml')).read()
  assert 'password' not in text and 'secrets.' not in text


def _check_version(tag):
  return subprocess.run(
      [sys.executable, os.path.join(ROOT, 'scripts', 'check_version.py'),
       tag], capture_output=True, text=True, timeout=60)


def test_check_version_accepts_the_version_tag_and_refuses_others():
  version = layerlr_optax.__version__
  assert _check_version(f'v{version}').returncode == 0
  wrong = _check_version('v99.0.0')
  assert wrong.returncode == 1
  assert f'v{version}' in wrong.stderr and '__version__' in wrong.stderr
  assert _check_version(version).returncode == 1  # the tag needs its 'v'


def test_the_version_lives_in_one_place():
  project = _pyproject()
  assert 'version' not in project['project']
  assert 'version' in project['project']['dynamic']
  assert project['tool']['setuptools']['dynamic']['version'] == {
      'attr': 'layerlr_optax.__version__'}
  with open(os.path.join(ROOT, 'docs', 'conf.py')) as f:
    assert 'layerlr_optax.__version__' in f.read()
  # No other file of the package, its metadata or its docs repeats it.
  version = re.escape(layerlr_optax.__version__)
  for name in ('pyproject.toml', 'CITATION.cff', 'README.md',
               os.path.join('docs', 'conf.py'),
               os.path.join('docs', 'index.md')):
    with open(os.path.join(ROOT, name)) as f:
      assert not re.search(rf'\b{version}\b', f.read()), name


def test_citation_cff_is_valid_and_agrees_with_pyproject():
  with open(os.path.join(ROOT, 'CITATION.cff')) as f:
    cff = yaml.safe_load(f)
  project = _pyproject()['project']
  # The keys CFF 1.2.0 requires, and the paper as the preferred citation.
  for key in ('cff-version', 'message', 'title', 'authors'):
    assert cff.get(key), key
  assert cff['cff-version'] == '1.2.0'
  assert cff['license'] == project['license']
  assert cff['repository-code'] == project['urls']['Source']
  assert cff['url'] == project['urls']['Documentation']
  paper = cff['preferred-citation']
  assert paper['year'] == 2015 and 'Layer-Specific' in paper['title']
  assert [a['family-names'] for a in paper['authors']] == [
      'Singh', 'De', 'Zhang', 'Goldstein', 'Taylor']
  # The README's BibTeX names the same paper.
  with open(os.path.join(ROOT, 'README.md')) as f:
    readme = f.read()
  assert paper['title'] in readme and 'arXiv:1510.04609' in readme
