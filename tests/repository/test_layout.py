"""The experiments' layers (issue #23): entry points on top, the framework
(`experiments.lib`) beneath them, the analysis beside it, no import cycles.

Every import counts, at the top of a file or deferred into a function.
"""

from __future__ import annotations

import ast
import os

from tests.conftest import ROOT

EXPERIMENTS = os.path.join(ROOT, 'experiments')
ENTRY_POINTS = {'experiments.run', 'experiments.sweep', 'experiments.report',
                'experiments.launch', 'experiments.near_minimum',
                'experiments.scale_invariance', 'experiments.kill_anywhere',
                'experiments.distributed_check', 'experiments.accelerator'}


def _modules() -> dict[str, str]:
  out = {}
  for folder, dirs, files in os.walk(EXPERIMENTS):
    dirs[:] = [d for d in dirs if d not in ('results', '__pycache__')]
    for name in files:
      if name.endswith('.py'):
        path = os.path.join(folder, name)
        module = os.path.relpath(path[:-3], ROOT).replace(os.sep, '.')
        out[module.removesuffix('.__init__')] = path
  return out


def import_graph() -> dict[str, set[str]]:
  """module -> the experiments modules it imports (anywhere in the file)."""
  modules = _modules()
  graph: dict[str, set[str]] = {m: set() for m in modules}
  for module, path in modules.items():
    with open(path) as f:
      tree = ast.parse(f.read())
    for node in ast.walk(tree):
      names = []
      if isinstance(node, ast.ImportFrom) and node.module and not node.level:
        names = [f'{node.module}.{a.name}' for a in node.names] + [node.module]
      elif isinstance(node, ast.Import):
        names = [a.name for a in node.names]
      for name in names:
        # `from experiments.lib import data`: the submodule if it is one.
        while name and name not in modules:
          name = name.rpartition('.')[0]
        if name and name != module and name != 'experiments':
          graph[module].add(name)
  # `from experiments.lib import x` also names the package itself.
  for module in graph:
    graph[module] -= {'experiments.lib', 'experiments.analysis'} - {module}
  return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """The strongly connected components with more than one module."""
  index: dict[str, int] = {}
  low: dict[str, int] = {}
  stack: list[str] = []
  on_stack: set[str] = set()
  found = []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in sorted(graph[v]):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        found.append(sorted(component))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return found


def test_no_import_cycles():
  assert _cycles(import_graph()) == []


def test_the_cycle_check_finds_a_cycle():
  assert _cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [
      ['a', 'b', 'c']]


def test_nothing_imports_an_entry_point():
  importers = {(m, d) for m, deps in import_graph().items() for d in deps
               if d in ENTRY_POINTS}
  assert not importers


def _assert_imports_only(prefix: str, allowed: tuple[str, ...]) -> None:
  for module, deps in import_graph().items():
    if module.startswith(prefix):
      outside = {d for d in deps if not d.startswith(allowed)}
      assert not outside, (module, outside)


def test_framework_imports_only_itself_and_the_configs():
  _assert_imports_only('experiments.lib',
                       ('experiments.lib', 'experiments.configs'))


def test_configs_import_only_the_framework():
  _assert_imports_only('experiments.configs',
                       ('experiments.lib', 'experiments.configs'))


def test_analysis_never_imports_the_training_loop():
  for module, deps in import_graph().items():
    if module.startswith('experiments.analysis'):
      assert 'experiments.lib.train' not in deps, module
      assert not deps & ENTRY_POINTS, module
