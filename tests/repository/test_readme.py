"""The README's commands: CI runs exactly its test command. (Its examples,
links and verdict are checked in tests/repository/test_docs.py.)"""

import os

from tests.conftest import ROOT


def test_ci_runs_exactly_the_readme_test_command():
  with open(os.path.join(ROOT, 'README.md')) as f:
    readme = f.read()
  with open(os.path.join(ROOT, '.ci', 'run')) as f:
    ci = f.read()
  assert 'bash scripts/test.sh' in readme
  assert 'bash scripts/reproduce_mnist.sh' in readme
  assert ci.strip().splitlines()[-1] == 'bash scripts/test.sh'
