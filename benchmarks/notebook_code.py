"""Import anime_gan.ipynb's own functions (definitions only, no cell is run) for the benchmarks."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "anime_gan.ipynb"
SHARED_FACES = ROOT.parent / "shared" / "data" / "anime-faces" / "images"


def load_notebook():
    """The notebook as a module of its imports, functions, classes and constants (no cell is run)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from notebook_module import load_notebook as load

    return load(NOTEBOOK)


def default_parameters():
    """Every knob's default: the Advanced settings form and the `parameters` form."""
    sys.path.insert(0, str(ROOT / "tests"))
    from notebook_module import default_parameters as defaults

    return defaults(NOTEBOOK)


def notebook_config(nb, **overrides):
    """The notebook's Config for its default parameters plus overrides (given in UPPER case)."""
    return nb.make_config({**default_parameters(), **overrides})
