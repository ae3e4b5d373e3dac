"""Sphinx configuration: getting started, guides, results, API, notebooks.

Build: ``sphinx-build -W -b html docs docs/_build/html`` (the test suite
does this with warnings as errors, tests/test_packaging.py).
"""

import os
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import layerlr_optax

project = 'layerlr-optax'
author = 'The layerlr-optax authors'
copyright = '2026, The layerlr-optax authors'
release = version = layerlr_optax.__version__

extensions = [
    'sphinx.ext.autodoc',
    'sphinx.ext.napoleon',      # Google-style Args:/Returns: as in optax
    'sphinx.ext.mathjax',       # the docstrings' math
    'sphinx.ext.viewcode',
    'sphinx.ext.intersphinx',   # optax.sgd, jax.Array, ... as links
    'myst_nb',                  # Markdown pages and the notebooks
    # MathJax from the build itself, not a CDN: math renders offline.
    'sphinx-mathjax-offline',
]
# Each project's inventory online (Read the Docs), else the small local one
# in docs/_inventories/ (written by docs/inventories.py for the names these
# pages use), so the offline build with -W links them too.
_INVENTORIES = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            '_inventories')
intersphinx_mapping = {
    name: (url, (None, os.path.join(_INVENTORIES, f'{name}.inv')))
    for name, url in (
        ('optax', 'https://optax.readthedocs.io/en/latest/'),
        ('jax', 'https://docs.jax.dev/en/latest/'),
        ('flax', 'https://flax.readthedocs.io/en/latest/'),
        ('python', 'https://docs.python.org/3/'),
    )
}
intersphinx_timeout = 5
# Signatures name the aliases instead of expanding their unions.
autodoc_type_aliases = {
    'LayersSpec': 'layerlr_optax.LayersSpec',
    'layers_lib.LayersSpec': 'layerlr_optax.LayersSpec',
    'ExcludeSpec': 'layerlr_optax.ExcludeSpec',
    'layers_lib.ExcludeSpec': 'layerlr_optax.ExcludeSpec',
    'StackedSpec': 'layerlr_optax.StackedSpec',
    'layers_lib.StackedSpec': 'layerlr_optax.StackedSpec',
    'AxisNames': 'layerlr_optax.AxisNames',
    'reduction.AxisNames': 'layerlr_optax.AxisNames',
    'MaxFactor': 'layerlr_optax.MaxFactor',
    'transform.MaxFactor': 'layerlr_optax.MaxFactor',
    'DepthSpec': 'layerlr_optax.DepthSpec',
    'rules.DepthSpec': 'layerlr_optax.DepthSpec',
    # optax's name for a pytree of arrays, not a private path.
    'PyTree': 'optax.Updates',
    'optax.ScalarOrSchedule': 'optax.ScalarOrSchedule',
    # Kept as written rather than expanded into its union.
    'jax.typing.ArrayLike': 'jax.typing.ArrayLike',
}
# A long signature: one parameter per line, not a wrapped paragraph.
maximum_signature_line_length = 88
napoleon_google_docstring = True
napoleon_numpy_docstring = False
autodoc_member_order = 'bysource'
autodoc_typehints = 'signature'
autodoc_preserve_defaults = True
default_role = 'py:obj'

# Notebooks are rendered with their committed outputs, never executed here.
nb_execution_mode = 'off'
myst_enable_extensions = ['dollarmath', 'amsmath']
myst_heading_anchors = 3

html_theme = 'sphinx_book_theme'
html_title = 'layerlr-optax'
html_static_path = ['_static']
html_css_files = ['custom.css']
html_js_files = ['tables.js']
# Results pages show wide tables: no right-hand table of contents there.
html_theme_options = {
    'secondary_sidebar_items': {'results/*': []},
}
exclude_patterns = ['_build', 'PAPER.md', 'paper-excerpt.txt', '_inventories',
                    '**.ipynb_checkpoints']
suppress_warnings = ['myst.header']

# The notebooks live in notebooks/ (where Colab opens them); Sphinx reads its
# sources from docs/, so they are copied into a git-ignored folder per build.
_NOTEBOOKS = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                          '_notebooks')
shutil.rmtree(_NOTEBOOKS, ignore_errors=True)
os.makedirs(_NOTEBOOKS)
for _name in sorted(os.listdir(os.path.join(ROOT, 'notebooks'))):
  if _name.endswith('.ipynb'):
    shutil.copy(os.path.join(ROOT, 'notebooks', _name), _NOTEBOOKS)
