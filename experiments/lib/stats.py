"""The statistics of every table: sample standard deviation, Welch's t-test
and Holm's correction for a family of tests. Shared by the sweep grid
(selection) and the analysis (tables)."""

from __future__ import annotations

import warnings

import numpy as np


def sample_std(values: np.ndarray, axis: int = 0) -> np.ndarray:
  """The sample std over `axis`; nan where fewer than 2 values."""
  values = np.asarray(values, np.float64)
  if values.shape[axis] < 2:
    return np.full(np.delete(values.shape, axis), np.nan)
  return values.std(axis=axis, ddof=1)


def welch_p(a: np.ndarray, b: np.ndarray) -> float:
  """Two-sided Welch t-test p-value (nan with fewer than 2 samples each)."""
  from scipy import stats as scipy_stats
  if len(a) < 2 or len(b) < 2:
    return float('nan')
  if np.std(a) == 0 and np.std(b) == 0:
    return 1.0 if np.mean(a) == np.mean(b) else 0.0
  with warnings.catch_warnings():
    # Seeds with the same error (often, at 0.01-point resolution) make scipy
    # warn about its variance estimate; the test stays valid (a one-sample
    # test against the other group), so the warning is only noise here.
    warnings.filterwarnings('ignore', 'Precision loss occurred',
                            RuntimeWarning)
    return float(scipy_stats.ttest_ind(a, b, equal_var=False).pvalue)


def holm(pvalues) -> list[float]:
  """Holm's step-down adjusted p-values (Holm 1979), in the input order.

  Sorted ascending, the i-th smallest of m gets ``min(1, (m - i) p_(i))``
  (i from 0), made non-decreasing: reject where the adjusted value is below
  alpha and the family-wise error rate is at most alpha. NaN p-values (a
  comparison without enough seeds) stay NaN and are not counted in m.
  """
  values = np.asarray(pvalues, np.float64)
  out = np.full(values.shape, np.nan)
  finite = np.flatnonzero(~np.isnan(values))
  m = len(finite)
  order = finite[np.argsort(values[finite], kind='stable')]
  running = 0.0
  for i, index in enumerate(order):
    running = max(running, min(1.0, (m - i) * values[index]))
    out[index] = running
  return [float(x) for x in out]
