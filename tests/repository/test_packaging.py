"""What a user installs: the declared minimum versions, the wheel, the docs.

Each test drives the same command a maintainer would type, in a subprocess.
"""

import glob
import os
import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile

import layerlr_optax

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _run(cmd, *, cwd=ROOT, timeout=1800, env=None):
  proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True,
                        text=True, timeout=timeout)
  output = proc.stdout + proc.stderr
  assert proc.returncode == 0, f'{" ".join(cmd)} failed:\n{output[-6000:]}'
  return proc


def _release(version: str) -> list[int]:
  """'0.10' and '0.10.0' alike: [0, 10, 0]."""
  parts = [int(p) for p in version.split('.')]
  return parts + [0] * (3 - len(parts))


def test_package_tests_pass_at_the_declared_minimum_versions():
  """pyproject.toml's lower bounds and oldest Python, tested as declared."""
  # pytest's summary is stdout's last line; set-up messages go to stderr.
  output = _run(['bash', os.path.join(ROOT, 'scripts',
                                      'test_min_versions.sh')]).stdout
  with open(os.path.join(ROOT, 'pyproject.toml'), 'rb') as f:
    project = tomllib.load(f)['project']
  python = project['requires-python'].removeprefix('>=')
  versions = re.search(r'minimum versions: (.*)', output).group(1)
  assert f'Python {python}.' in versions, versions
  for requirement in project['dependencies']:
    name, version = requirement.split('>=')
    assert f'{name} {version}' in versions, (requirement, versions)
  # The frameworks' tests ran at the extras' lower bounds (0.10 is 0.10.0).
  frameworks = _run([sys.executable, os.path.join(
      ROOT, 'scripts', 'min_versions.py'), '--frameworks']).stdout.split()
  assert len(frameworks) == 4, frameworks
  for pin in frameworks:
    name, version = pin.split('==')
    shown = re.search(rf'{re.escape(name)} ([0-9.]+)', versions)
    assert shown and _release(shown.group(1)) == _release(version), (
        pin, versions)
  summary = output.strip().splitlines()[-1]
  assert re.search(r'\d+ passed', summary) and 'failed' not in summary, summary
  assert 'skipped' not in summary, summary


def test_wheel_and_sdist_build_without_warnings_and_install(tmp_path):
  """`python -m build`, then the wheel alone in a fresh virtual environment:
  no editable install, no repository on the path."""
  dist = tmp_path / 'dist'
  # PYTHONDONTWRITEBYTECODE (set on some machines) only makes setuptools warn
  # that it skips byte-compiling; every other warning fails the test.
  build_env = {k: v for k, v in os.environ.items()
               if k != 'PYTHONDONTWRITEBYTECODE'}
  build = _run([sys.executable, '-m', 'build', '--outdir', str(dist), ROOT],
               env=build_env)
  output = build.stdout + build.stderr
  warnings = [line for line in output.splitlines()
              if re.search(r'warning', line, re.I)]
  assert not warnings, '\n'.join(warnings)
  wheels = glob.glob(str(dist / '*.whl'))
  sdists = glob.glob(str(dist / '*.tar.gz'))
  assert len(wheels) == 1 and len(sdists) == 1, os.listdir(dist)
  assert os.path.basename(wheels[0]).startswith(
      f'layerlr_optax-{layerlr_optax.__version__}-py3-none-any')
  _check_distribution_contents(wheels[0], sdists[0])

  venv = tmp_path / 'venv'
  _run([sys.executable, '-m', 'venv', str(venv)])
  python = str(venv / 'bin' / 'python')
  _run([python, '-m', 'pip', 'install', '-q', wheels[0]], timeout=1800)
  elsewhere = tmp_path / 'elsewhere'
  elsewhere.mkdir()
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
  check = (
      'import doctest, sys, layerlr_optax\n'
      'from layerlr_optax._src import alias, layers, transform\n'
      'assert "site-packages" in layerlr_optax.__file__, layerlr_optax.__file__\n'
      'assert not any(p.rstrip("/") == %r for p in sys.path)\n'
      'failed = attempted = 0\n'
      'for module in (layerlr_optax, transform, alias, layers):\n'
      '  result = doctest.testmod(module)\n'
      '  failed += result.failed; attempted += result.attempted\n'
      'print(f"doctests: {attempted} run, {failed} failed")\n'
      'sys.exit(1 if failed or not attempted else 0)\n' % ROOT)
  output = _run([python, '-c', check], cwd=str(elsewhere), env=env).stdout
  assert re.search(r'doctests: [1-9]\d* run, 0 failed', output), output


def _check_distribution_contents(wheel: str, sdist: str) -> None:
  """What a user downloads: the package, its license and typing marker and
  metadata; never the experiments, their results, data or the tests."""
  with zipfile.ZipFile(wheel) as z:
    wheel_files = z.namelist()
  with tarfile.open(sdist) as t:
    # Without the top folder (layerlr_optax-X.Y.Z/).
    sdist_files = [n.split('/', 1)[1] for n in t.getnames() if '/' in n]
  package = {os.path.relpath(os.path.join(folder, f), ROOT)
             for folder, _, files in os.walk(os.path.join(ROOT,
                                                          'layerlr_optax'))
             for f in files if f.endswith('.py') or f == 'py.typed'}
  assert package <= set(wheel_files), package - set(wheel_files)
  assert package <= set(sdist_files), package - set(sdist_files)
  assert any(re.search(r'dist-info/licenses/LICENSE$', n)
             for n in wheel_files), wheel_files
  assert {'LICENSE', 'README.md', 'pyproject.toml'} <= set(sdist_files)
  for files in (wheel_files, sdist_files):
    leaked = [n for n in files if n.startswith(
        ('experiments/', 'tests/', 'benchmarks/', 'notebooks/', 'docs/',
         '.sweeps/', 'scripts/'))
              or n.endswith(('.json', '.gz', '.npz', '.png', '.jpg',
                             '.ipynb'))]
    assert not leaked, leaked
  with zipfile.ZipFile(wheel) as z:
    metadata = z.read(next(n for n in wheel_files
                           if n.endswith('dist-info/METADATA'))).decode()
  assert f'Version: {layerlr_optax.__version__}' in metadata
  assert 'License-Expression: Apache-2.0' in metadata
  assert re.search(r'Requires-Dist: jax>=', metadata)


def test_docs_build_with_warnings_as_errors(tmp_path):
  """The Sphinx site: every page, the API reference from the docstrings
  (aliases named, links to optax), the included results tables, the
  notebooks rendered without executing them."""
  html = tmp_path / 'html'
  _run([sys.executable, '-m', 'sphinx', '-W', '--keep-going', '-q', '-b',
        'html', os.path.join(ROOT, 'docs'), str(html)], timeout=900)
  with open(html / 'api.html') as f:
    api = f.read()
  for name in layerlr_optax.__all__:
    assert f'id="layerlr_optax.{name}"' in api, f'{name} is not documented'
  assert 'class="math' in api  # eq. 9 rendered as math
  notebooks = glob.glob(os.path.join(ROOT, 'notebooks', '*.ipynb'))
  for notebook in notebooks:
    name = os.path.splitext(os.path.basename(notebook))[0]
    assert (html / '_notebooks' / f'{name}.html').exists(), name
  with open(html / 'results' / 'near_minimum.html') as f:
    assert 'rosenbrock' in f.read()
  with open(html / 'results' / 'tuned_comparison.html') as f:
    page = f.read()
  assert 'mnist_transformer' in page and '<table' in page
  for page in ('getting_started', 'semantics', 'reproduction', 'development',
               'guides/scan_stacked', 'guides/excluding', 'guides/logging',
               'guides/checkpointing', 'guides/multiple_devices',
               'guides/learning_rate', 'guides/adaptive_optimizers',
               'results/paper_reproduction', 'results/scale_dependence',
               'results/cost', 'results/scale_and_faults'):
    assert (html / f'{page}.html').exists(), page
  # Signatures name the aliases, and optax objects link to optax's docs.
  assert 'LayersSpec' in api and 'optax.readthedocs.io' in api
  # As a user reads them (#33): no expanded ArrayLike union, no private
  # module path, one parameter per line for long signatures.
  text = re.sub(r'<[^>]+>', '', api)
  assert 'bool | number | bool' not in text
  assert '_src.' not in re.sub(r'_modules/[^"]*', '', text.split(
      'API reference', 1)[1]), 'a private path in a signature'
  assert 'jax.typing.ArrayLike' in text
  # A long signature lists its parameters one per line (<dl><dd>).
  layerwise = api.split('id="layerlr_optax.layerwise"', 1)[1][:600]
  assert '<dl>' in layerwise and '<dd><em class="sig-param">' in layerwise
  # Math renders offline: MathJax is served from the build, not a CDN.
  for page in ('index.html', 'api.html', 'semantics.html'):
    with open(html / page) as f:
      source = f.read()
    assert '_static/mathjax/tex-chtml.js' in source, page
    assert 'cdn.jsdelivr' not in source and 'mathjax@' not in source, page
  assert (html / '_static' / 'mathjax' / 'tex-chtml.js').exists()
  # Results pages: the wide-table stylesheet and script are served.
  assert (html / '_static' / 'custom.css').exists()
  assert (html / '_static' / 'tables.js').exists()
