"""Looks at the built documentation as a reader does: headless Chromium at
1,280 px, one full-page screenshot per page, and a check of what a reader
would have to scroll sideways for.

  python -m sphinx -W -b html docs docs/_build/html
  python scripts/screenshot_docs.py docs/_build/html [OUT_DIR]

Needs Chromium (Debian: ``apt install chromium``) and the ``playwright``
Python package (``pip install playwright``; its own browsers are not
needed). Writes OUT_DIR (default ``docs/_build/screenshots``)/PAGE.png and
summary.json, and exits 1 if any page has a table or figure wider than its
column, a page wider than the window, or math left as raw TeX (MathJax not
loaded: it must come from the build, not a CDN, and the pages are opened
with the network blocked).
"""

from __future__ import annotations

import json
import os
import shutil
import sys

WIDTH, HEIGHT = 1280, 900
PAGES = ('index', 'getting_started', 'semantics', 'api',
         'results/index', 'results/paper_reproduction',
         'results/tuned_comparison', 'results/cost',
         'results/scale_dependence', 'results/near_minimum',
         'results/scale_and_faults', 'guides/per_layer_rules',
         'guides/composition', 'reproduction')

# What overflows, measured in the page: tables (pydata-sphinx-theme wraps
# each in a scrollable container), figures, the page itself, and TeX that
# MathJax did not typeset.
_CHECK = """() => {
  const article = document.querySelector('article') || document.body;
  const column = article.getBoundingClientRect();
  const out = {tables: [], images: [], page_overflow: 0, raw_math: 0};
  article.querySelectorAll('table').forEach((t, i) => {
    const box = t.parentElement;
    const wide = Math.max(t.scrollWidth - box.clientWidth,
                          t.getBoundingClientRect().right - column.right);
    if (wide > 1) out.tables.push({index: i, overflow_px: Math.round(wide),
      text: t.innerText.slice(0, 60)});
  });
  article.querySelectorAll('img').forEach((img) => {
    const r = img.getBoundingClientRect();
    if (r.right - column.right > 1 || img.naturalWidth === 0)
      out.images.push({src: img.getAttribute('src'),
                       overflow_px: Math.round(r.right - column.right),
                       loaded: img.naturalWidth > 0});
  });
  out.page_overflow = Math.max(0, document.documentElement.scrollWidth -
                                  window.innerWidth);
  const mathNodes = article.querySelectorAll('.math');
  mathNodes.forEach((m) => {
    if (!m.querySelector('mjx-container')) out.raw_math += 1;
  });
  out.math = mathNodes.length;
  return out;
}"""


def chromium() -> str:
  for name in ('chromium', 'chromium-browser', 'google-chrome'):
    path = shutil.which(name)
    if path:
      return path
  raise SystemExit('error: no Chromium found; install it (Debian: apt '
                   'install chromium).')


def main(argv: list[str]) -> int:
  if len(argv) < 2:
    print(__doc__.strip().splitlines()[4].strip(), file=sys.stderr)
    return 2
  html = os.path.abspath(argv[1])
  out = os.path.abspath(argv[2] if len(argv) > 2 else os.path.join(
      'docs', '_build', 'screenshots'))
  try:
    from playwright.sync_api import sync_playwright
  except ImportError:
    raise SystemExit('error: pip install playwright (the Python package; '
                     'the system Chromium is used).') from None
  os.makedirs(out, exist_ok=True)
  summary, problems = {}, 0
  with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=chromium())
    page = browser.new_page(viewport={'width': WIDTH, 'height': HEIGHT})
    # Offline, as a reader without network: only file:// loads.
    page.route('**/*', lambda route: route.continue_()
               if route.request.url.startswith('file://') else route.abort())
    for name in PAGES:
      path = os.path.join(html, f'{name}.html')
      if not os.path.exists(path):
        summary[name] = {'missing': True}
        problems += 1
        continue
      page.goto(f'file://{path}')
      page.wait_for_load_state('networkidle')
      if page.query_selector('.math'):
        try:
          page.wait_for_selector('mjx-container', timeout=10_000)
        except Exception:  # reported as raw_math below
          pass
      result = page.evaluate(_CHECK)
      shot = os.path.join(out, name.replace('/', '__') + '.png')
      page.screenshot(path=shot, full_page=True)
      summary[name] = result
      bad = (len(result['tables']) + len(result['images'])
             + (result['page_overflow'] > 1) + result['raw_math'])
      problems += bad
      print(f'{name:32s} tables over: {len(result["tables"])}  figures '
            f'over: {len(result["images"])}  page over: '
            f'{result["page_overflow"]} px  raw math: {result["raw_math"]}'
            f'/{result["math"]}')
    browser.close()
  with open(os.path.join(out, 'summary.json'), 'w') as f:
    json.dump({'viewport': [WIDTH, HEIGHT], 'pages': summary}, f, indent=1)
  print(f'screenshots and summary.json in {out}; '
        f'{problems} problem(s)')
  return 1 if problems else 0


if __name__ == '__main__':
  sys.exit(main(sys.argv))
