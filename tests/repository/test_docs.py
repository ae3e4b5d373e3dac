"""The README and the docs stay true (issues #24, #26): every example runs
and prints what the page says, every included table equals its re-rendering
from the committed JSON, every number on a results page is in the files the
page names as its sources, and the README's verdict is recomputed from the
sweeps."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

from tests.repository import docs_examples
from tests.conftest import ROOT

_INCLUDE = re.compile(r'```\{include\} (\S+)\n((?::[\w-]+:.*\n)*)```')


@pytest.mark.frameworks
@pytest.mark.parametrize('page', [p for p in docs_examples.pages()
                                  if docs_examples.examples(p)])
def test_examples_run_and_print_what_the_page_says(page):
  for code, expected, printed in docs_examples.run(page):
    if expected is not None:
      assert printed == expected, (
          f'{page}: the example\n{code}\nprints\n{printed}\nnot\n{expected}'
          f'(python -m tests.repository.docs_examples --write {page} updates the page)')


def _included(page: str) -> list[str]:
  with open(os.path.join(ROOT, page)) as f:
    text = f.read()
  return [os.path.normpath(os.path.join(os.path.dirname(page), m.group(1)))
          for m in _INCLUDE.finditer(text)]


def _render(path: str) -> str | None:
  """`path` re-rendered from its JSON by the code that wrote it (None: a
  file with no renderer, e.g. the paper's notes)."""
  from benchmarks import report as bench_report
  from experiments import near_minimum
  from experiments import scale_invariance
  from experiments.analysis import results as results_lib
  from experiments.analysis import sweeps
  from experiments.lib import records
  folder, name = os.path.split(os.path.join(ROOT, path))
  if path.startswith('benchmarks/results/'):
    return bench_report.render(os.path.join(
        folder, name[:-3] + '.json')).rstrip() + '\n'
  if name == 'best.md':
    with open(os.path.join(folder, 'sweep.json')) as f:
      return sweeps.best_markdown(json.load(f))
  if name == 'verdict.md':
    from experiments.analysis import verdict
    with open(os.path.join(folder, 'verdict.json')) as f:
      return verdict.markdown(json.load(f))
  if name == 'table.md' and os.path.exists(os.path.join(folder,
                                                        'results.json')):
    return results_lib.table_markdown(
        records.load_results(os.path.join(folder, 'results.json')))
  if name == 'factors.md' and os.path.exists(os.path.join(folder,
                                                          'results.json')):
    return results_lib.factors_markdown(
        records.load_results(os.path.join(folder, 'results.json')))
  if name == 'factors.md':
    with open(os.path.join(folder, 'factors.json')) as f:
      return scale_invariance.markdown(json.load(f)['rows'])
  if name == 'near_minimum.md':
    with open(os.path.join(folder, 'near_minimum.json')) as f:
      payload = json.load(f)
    return near_minimum.markdown(payload['rows'], payload['tolerance'],
                                 payload['steps'])
  return None


def _docs_pages() -> list[str]:
  return [p for p in docs_examples.pages() if p.startswith('docs/')]


def test_every_included_table_is_its_json_rendered():
  checked = 0
  for page in _docs_pages():
    for path in _included(page):
      rendered = _render(path)
      if rendered is None:
        continue
      with open(os.path.join(ROOT, path)) as f:
        committed = f.read()
      assert committed.strip() == rendered.strip(), (
          f'{path} (included by {page}) is stale: regenerate it from its '
          'JSON with the command that wrote it')
      checked += 1
  assert checked >= 15, checked


_NUMBER = re.compile(r'(?<![\w.])[-−+]?\d+\.\d+(?:e[-+]?\d+)?(?![\w.])')


def _numbers(text: str) -> list[str]:
  return _NUMBER.findall(text)


# A decimal number, with its sign where one is written before it (not the
# dash of a range such as "1.14-1.19").
_ANY_NUMBER = re.compile(r'(?:(?<![\w.])([-+−]))?(\d+\.\d+(?:e[-+]?\d+)?)')


def _value_set(paths: list[str]) -> list[float]:
  """Every decimal number written in `paths` (also inside names such as
  ``lr0.025``), signed as written."""
  values = []
  for path in paths:
    with open(os.path.join(ROOT, path)) as f:
      values += _parse_values(f.read())
  return values


def _parse_values(text: str) -> list[float]:
  return [-float(number) if sign in ('-', '−') else float(number)
          for sign, number in _ANY_NUMBER.findall(text)]


def _shown(token: str, values: list[float]) -> bool:
  """Whether some source value, rounded as `token` is written, is it. A
  written sign must match ("+0.24" is not the source's -0.24); a number
  written without one may be a magnitude ("0.06 points better")."""
  text = token.replace('−', '-')
  signed = text[0] in '+-'
  x = float(text)
  decimals = len(text.lstrip('+-').split('.')[1].split('e')[0])
  if 'e' in text:
    return any(np.isclose(v, x, rtol=10 ** -decimals) for v in values)
  if signed:
    return any(abs(round(v, decimals) - x) < 10 ** -(decimals + 3)
               for v in values)
  return any(abs(round(abs(v), decimals) - abs(x)) < 10 ** -(decimals + 3)
             for v in values)


def _prose(text: str) -> str:
  """The page without its code blocks, includes and comments."""
  text = re.sub(r'```.*?```', '', text, flags=re.S)
  return re.sub(r'<!--.*?-->', '', text, flags=re.S)


def _without_claims(page: str, text: str) -> str:
  """`text` (whitespace normalised) without the passages of the claims
  table, which test_claims.py binds more strictly."""
  from tests.repository import claims
  text = ' '.join(text.split())
  for claim in claims.CLAIMS:
    if claim.page == page:
      text = text.replace(claim.write(), ' ')
  return text


def _pages_with_measured_numbers() -> list[str]:
  """The results pages, and every other page whose prose quotes a decimal
  number (the guides, the semantics); not the paper's notes (the source),
  the README (its verdict is recomputed below) or the development page's
  version table."""
  out = []
  for page in docs_examples.pages():
    if page.startswith('docs/results/') and not page.endswith('index.md'):
      out.append(page)
    elif page.startswith(('docs/guides/', 'docs/semantics')):
      with open(os.path.join(ROOT, page)) as f:
        if _numbers(_prose(f.read())):
          out.append(page)
  return out


@pytest.mark.parametrize('page', _pages_with_measured_numbers())
def test_every_number_on_a_results_page_is_in_its_sources(page):
  with open(os.path.join(ROOT, page)) as f:
    text = f.read()
  declared = re.search(r'<!-- sources: (.*?) -->', text)
  assert declared, f'{page} names no sources (<!-- sources: FILE ... -->)'
  sources = declared.group(1).split() + _included(page)
  values = _value_set(sources)
  text = _without_claims(page, text)
  missing = [n for n in _numbers(_prose(text)) if not _shown(n, values)]
  assert not missing, (f'{page}: numbers not in its sources {sources}: '
                       f'{missing}')


def test_the_number_check_catches_a_wrong_number():
  values = _value_set(['experiments/results/mnist_lenet_sweep/best.md'])
  assert _shown('1.17', values) and _shown('−0.06', values)
  assert not _shown('1.1734', values) and not _shown('97.53', values)
  # The sign is part of the number (#31: "+0.24" turned into "-0.24").
  values = _parse_values('| sgd+layer | sgd | -0.24 | 0.436 | 1.14-1.19 |')
  assert _shown('−0.24', values) and _shown('0.24', values)
  assert not _shown('+0.24', values) and not _shown('-0.436', values)
  assert _shown('1.19', values) and not _shown('-1.19', values)


# The README's verdict and the other bound claims: test_claims.py.


def test_readme_is_short_and_is_the_wheels_description():
  with open(os.path.join(ROOT, 'README.md')) as f:
    lines = f.read().splitlines()
  assert len(lines) <= 200, len(lines)
  with open(os.path.join(ROOT, 'pyproject.toml')) as f:
    assert 'readme = "README.md"' in f.read()


def test_readme_links_resolve():
  with open(os.path.join(ROOT, 'README.md')) as f:
    readme = f.read()
  for target in re.findall(r'\]\(([^)#\s]+)(?:#[^)]*)?\)', readme):
    if target.startswith('http'):
      continue
    assert os.path.exists(os.path.join(ROOT, target)), target


def _generated_files() -> list[str]:
  """Every Markdown file a command writes into the committed results."""
  out = []
  for folder in ('experiments/results', 'benchmarks/results'):
    for base, dirs, files in os.walk(os.path.join(ROOT, folder)):
      dirs[:] = [d for d in dirs if d not in ('runs', 'tensorboard',
                                              'checkpoints', 'workers')]
      out += [os.path.relpath(os.path.join(base, f), ROOT) for f in files
              if f.endswith('.md')]
  return sorted(out)


def test_every_generated_results_file_is_its_json_rendered():
  from experiments.analysis import sweeps
  checked, unrendered = [], []
  for path in _generated_files():
    if path.endswith('grid.md'):
      with open(os.path.join(ROOT, os.path.dirname(path), 'sweep.json')) as f:
        rendered = sweeps.grid_markdown(json.load(f))
    else:
      rendered = _render(path)
    if rendered is None:
      unrendered.append(path)
      continue
    with open(os.path.join(ROOT, path)) as f:
      assert f.read().strip() == rendered.strip(), f'{path} is stale'
    checked.append(path)
  # The sweeps' best.md and grid.md, the runs' table.md and factors.md, the
  # studies' tables and the benchmarks' tables.
  assert len(checked) >= 24, checked
  print('not re-rendered (logs and notes):', unrendered)


def test_every_number_on_the_notebooks_page_is_in_the_notebooks():
  import nbformat
  with open(os.path.join(ROOT, 'docs', 'notebooks.md')) as f:
    text = f.read()
  printed = ''
  for name in ('quickstart', 'vanishing_gradients', 'saddle_points'):
    nb = nbformat.read(os.path.join(ROOT, 'notebooks', f'{name}.ipynb'), 4)
    printed += ''.join(o.get('text', '') for c in nb.cells
                       if c.cell_type == 'code' for o in c.outputs)
  values = _parse_values(printed)
  missing = [n for n in _numbers(_prose(text)) if not _shown(n, values)]
  assert not missing, missing


# Numbers that only mean something together must come from one row of a
# source: a mean and its std ("1.17 ± 0.19"), a difference and its p
# ("−0.06 points, p = 0.436"). Each on its own may appear elsewhere in the
# sources (a p of another comparison), so the single-number check cannot
# see them swapped (#31).
_MEAN_STD = re.compile(r'(\d+\.\d+) ± (\d+\.\d+)')
_DELTA_P = re.compile(
    r'([−+-]\d+\.\d+)(?: points?)?,(?: Welch| two-sided)* p\s*=\s*(\d+\.\d+)')


def _unpaired(text: str, lines: list[str]) -> list[str]:
  prose = ' '.join(_prose(text).split())
  missing = [m.group(0) for m in _MEAN_STD.finditer(prose)
             if not any(m.group(0) in line for line in lines)]
  for m in _DELTA_P.finditer(prose):
    delta, p = m.group(1).replace('−', '-'), m.group(2)
    if not any(delta in line and p in line for line in lines):
      missing.append(m.group(0))
  return missing


def _source_lines(page: str, text: str) -> list[str]:
  declared = re.search(r'<!-- sources: (.*?) -->', text)
  lines = []
  for path in (declared.group(1).split() if declared else []) + _included(
      page):
    with open(os.path.join(ROOT, path)) as f:
      lines += f.read().splitlines()
  return lines


@pytest.mark.parametrize('page', _pages_with_measured_numbers())
def test_paired_numbers_come_from_one_source_row(page):
  with open(os.path.join(ROOT, page)) as f:
    text = f.read()
  lines = _source_lines(page, text)
  text = _without_claims(page, text)
  missing = _unpaired(text, lines)
  assert not missing, f'{page}: pairs in no source row: {missing}'


def test_the_pair_check_catches_a_swapped_number():
  page = 'docs/results/tuned_comparison.md'
  with open(os.path.join(ROOT, page)) as f:
    text = f.read()
  lines = _source_lines(page, text)
  for old, new in (('−0.06 points, Welch p = 0.436',
                    '−0.06 points, Welch p = 0.043'),
                   ('SGD 1.17 ± 0.19%', 'SGD 1.31 ± 0.19%'),
                   ('+0.24 points, p =', '−0.24 points, p =')):
    assert old in text, old
    assert _unpaired(text.replace(old, new), lines), new
