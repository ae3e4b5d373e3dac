"""A benchmark repeated in fresh processes, with the spread of its ratios.

  python -m benchmarks.repeated --times 3 --json OUT.json -- overhead --trees lenet

Runs ``python -m benchmarks.NAME ARGS --json ...`` TIMES times, one after
another, each a fresh process (its own compilation, allocator and timing
noise), and writes one JSON shaped like a single run's: each case's numbers
are the median over the repetitions, with ``ratio_min``/``ratio_max`` (and
``compile_ratio_min``/``compile_ratio_max`` where the benchmark reports
compile ratios) the range, ``repetitions`` the count, and ``each`` every
repetition's payload. Written after every repetition; SIGTERM (a time
limit) stops the one running and keeps what it wrote (the benchmarks write
their JSON as they go), so a stopped command keeps what finished.
``benchmarks.report`` shows the range beside each median.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence

from benchmarks import common

# The numbers of a case that are medians over repetitions; the ratios also
# get their range.
_RANGED = ('ratio', 'compile_ratio')
_KEY = ('tree', 'optimizer')


def merge(payloads: Sequence[dict]) -> dict:
  """One payload from repetitions of the same benchmark (same cases)."""
  first = payloads[0]
  keys = [tuple(c[k] for k in _KEY) for c in first['cases']]
  by_rep = [{tuple(c[k] for k in _KEY): c for c in p['cases']}
            for p in payloads]
  cases = []
  for key in keys:
    rows = [rep[key] for rep in by_rep if key in rep]
    case = dict(rows[0])
    for field, value in rows[0].items():
      if isinstance(value, float):
        values = [r[field] for r in rows]
        case[field] = statistics.median(values)
        if field in _RANGED:
          case[f'{field}_min'], case[f'{field}_max'] = min(values), max(values)
    case['repetitions'] = len(rows)
    cases.append(case)
  merged = {**first, 'cases': cases, 'repetitions': len(payloads),
            'each': list(payloads)}
  if 'seeds' in first:
    seeds = dict(first['seeds'])
    for field in ('vmapped_s', 'sequential_s', 'vmapped_over_sequential'):
      seeds[field] = statistics.median(p['seeds'][field] for p in payloads)
    seeds['faster'] = ('vmapped' if seeds['vmapped_s'] < seeds['sequential_s']
                       else 'sequential')
    merged['seeds'] = seeds
  return merged


def main(argv: list[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  if '--' not in argv:
    print('usage: python -m benchmarks.repeated --times N --json OUT.json -- '
          'BENCHMARK [ARGS]', file=sys.stderr)
    return 2
  split = argv.index('--')
  parser = argparse.ArgumentParser(prog='python -m benchmarks.repeated')
  parser.add_argument('--times', type=int, default=3)
  parser.add_argument('--json', required=True)
  args = parser.parse_args(argv[:split])
  benchmark = argv[split + 1:]
  if not benchmark or args.times < 1:
    parser.error('name a benchmark after --, and --times >= 1')
  if any(a == '--json' or a.startswith('--json=') for a in benchmark):
    parser.error('--json goes before --: the repetitions write their own')
  payloads: list[dict] = []

  def keep(path: str) -> None:
    """Adds a repetition's JSON (whole, or what a stopped one wrote)."""
    if os.path.exists(path):
      with open(path) as f:
        payloads.append(json.load(f))
      common.write_json(args.json, merge(payloads))

  def stop(signum, frame):
    del signum, frame
    raise KeyboardInterrupt

  # SIGTERM (a time box) stops the repetition running (it gets the signal
  # too, as one process group) and keeps what it finished.
  signal.signal(signal.SIGTERM, stop)
  with tempfile.TemporaryDirectory() as tmp:
    for i in range(args.times):
      path = os.path.join(tmp, f'rep{i}.json')
      proc = subprocess.Popen(
          [sys.executable, '-m', f'benchmarks.{benchmark[0]}',
           *benchmark[1:], '--json', path])
      try:
        code = proc.wait()
      except KeyboardInterrupt:
        proc.terminate()
        proc.wait()
        keep(path)
        print(f'stopped in repetition {i}; kept {len(payloads)} (the last '
              'partial)', file=sys.stderr)
        return 130
      if code or not os.path.exists(path):
        print(f'repetition {i} exited {code}; keeping {len(payloads)}',
              file=sys.stderr)
        return 1
      keep(path)
  return 0


if __name__ == '__main__':
  sys.exit(main())
