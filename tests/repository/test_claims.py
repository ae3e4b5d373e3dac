"""Published numbers bound to their values (#31): the claims table
(`claims.py`), its coverage of the verdict passages, and that edits of the
kind an audit made (a sign, a digit, a count) fail it."""

from __future__ import annotations

import os
import re

import pytest

from tests.conftest import ROOT
from tests.repository import claims

# A number as prose writes it: not part of a name (CIFAR-10, conv1, lr0.01,
# eq9) nor of a path.
_NUMBER = re.compile(r'(?<![\w./\-])[-+−]?\d+(?:[.,]\d+)*(?:e[-+]?\d+)?'
                     r'(?![\w/\-])')


def _normalised(text: str) -> str:
  return ' '.join(text.split())


def _page(path: str) -> str:
  with open(os.path.join(ROOT, path)) as f:
    return _normalised(f.read())


def _prose(text: str) -> str:
  """Without code spans, link targets and comments (their digits are not
  claims), each replaced by spaces so positions stay."""
  blank = lambda m: ' ' * len(m.group(0))
  text = re.sub(r'<!--.*?-->', blank, text)
  text = re.sub(r'\b[Ee]q\. \d+', blank, text)  # a name: "eq. 9"
  text = re.sub(r'`[^`]*`', blank, text)
  return re.sub(r'\]\([^)]*\)', blank, text)


def claim_problems(pages: dict[str, str]) -> list[str]:
  """What is wrong with the claims on `pages` ({path: normalised text})."""
  problems = []
  for claim in claims.CLAIMS:
    text = claim.write()
    if text not in pages[claim.page]:
      problems.append(f'{claim.page}: not on the page as its source '
                      f'({claim.source}; {claim.how}) writes it: {text!r}')
  for page, start, end in claims.COVERED:
    text = pages[page]
    assert start in text and end in text, (page, start, end)
    lo, hi = text.index(start), text.index(end, text.index(start))
    spans = []
    for claim in claims.CLAIMS:
      if claim.page != page:
        continue
      written = claim.write()
      spans += [(m.start(), m.end()) for m in re.finditer(re.escape(written),
                                                           text)]
    for m in _NUMBER.finditer(_prose(text)[lo:hi]):
      at = lo + m.start()
      if not any(a <= at < b for a, b in spans):
        problems.append(f'{page}: {m.group(0)!r} at '
                        f'"...{text[max(0, at - 40):at + 20]}..." is in no '
                        'claim (add it to tests/repository/claims.py)')
  return problems


def _pages() -> dict[str, str]:
  paths = {c.page for c in claims.CLAIMS} | {p for p, _, _ in claims.COVERED}
  return {path: _page(path) for path in paths}


def test_every_claim_is_on_its_page_and_equals_its_source():
  problems = claim_problems(_pages())
  assert not problems, '\n'.join(problems)


def test_every_claim_names_a_committed_source():
  for claim in claims.CLAIMS:
    assert os.path.exists(os.path.join(ROOT, claim.source)), claim.source


# The audit's edits (#31, item 4), as they would be made on the pages.
EDITS = [
    ('README.md', 'Δ -0.07', 'Δ +0.07'),
    ('README.md', 'p = 0.340', 'p = 0.034'),
    ('README.md', '1.17% vs sgd 1.24%', '1.31% vs sgd 1.24%'),
    ('README.md', 'averages 2.42-2.50', 'averages 4.42-5.50'),
    ('README.md', 'none is significant', '1 are significant'),
    ('README.md', 'Holm p = 0.660', 'Holm p = 0.066'),
    ('docs/index.md', 'smallest adjusted p = 0.367',
     'smallest adjusted p = 0.010'),
    ('docs/results/cost.md', 'below the anchor on 7 of the 9',
     'below the anchor on 9 of the 9'),
    ('docs/results/cost.md', 'apart on 4', 'apart on 7'),
    ('docs/results/paper_reproduction.md', 'all 30 cells', 'all 24 cells'),
    ('docs/notebooks.md', '→ 7.4%', '→ 7.1%'),
    ('docs/results/tuned_comparison.md', 'mean is 1.17%', 'mean is 1.31%'),
    ('docs/results/paper_reproduction.md', '1.25, 1.15** | 0.09 |',
     '1.25, 1.15** | 0.01 |'),
    ('docs/results/scale_and_faults.md', 'within 2.2e-7', 'within 2e-7'),
    ('docs/results/tuned_comparison.md', '104,394 parameters',
     '105,394 parameters'),
    # Which comparison is the best case, and the CIFAR-10 seed counts.
    ('README.md', "is CIFAR-10's adagrad+layer vs adagrad",
     "is LeNet's adagrad+layer vs adagrad"),
    ('docs/guides/learning_rate.md', 'the largest gain, also the most',
     'the smallest gain, also the most'),
    ('docs/results/tuned_comparison.md', 'and 9 at the best',
     'and 10 at the best'),
    ('docs/results/tuned_comparison.md', 'Seeds 5 to 8', 'Seeds 5 to 9'),
    ('docs/results/tuned_comparison.md', 'p = 0.014 uncorrected',
     'p = 0.041 uncorrected'),
    # A number added to a covered passage without a claim.
    ('README.md', 'If you add it to a tuned optimizer',
     'In 3 of 4 workloads, if you add it to a tuned optimizer'),
]


@pytest.mark.parametrize('page,old,new', EDITS)
def test_an_edited_number_fails(page, old, new):
  pages = _pages()
  assert old in pages[page], (page, old)
  pages[page] = pages[page].replace(old, new, 1)
  assert claim_problems(pages), f'{page}: {old!r} -> {new!r} was not caught'
