"""Load anime_gan.ipynb's definitions as a module, without running the notebook.

Kept, in notebook order: imports, functions, classes, and constants (top-level assignments to names that start
with a capital letter, such as `RULES`, `Config` or the parameters). Left out: every other statement, so nothing
is downloaded, decoded, trained or written. Tests and benchmarks then call the notebook's own code in-process,
and monkeypatching a function on the module changes what the other functions call.
"""

import ast
import json
import linecache
import re
import types
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parents[1] / "anime_gan.ipynb"
DEFINITIONS = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)
CONSTANT = re.compile(r"[A-Z]\w*$")


def is_definition(node):
    """True for the statements the module keeps."""
    if isinstance(node, DEFINITIONS):
        return True
    targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
    return isinstance(node, (ast.Assign, ast.AugAssign)) and all(
        isinstance(target, ast.Name) and CONSTANT.match(target.id) for target in targets
    )


def load_notebook(path=NOTEBOOK):
    """The notebook at path as a module of its definitions; tracebacks show the notebook's code."""
    path = Path(path)
    cells = [c for c in json.loads(path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"]
    body, lines = [], []
    for cell in cells:
        source = "".join(cell["source"]) + "\n"
        tree = ast.parse(source)
        ast.increment_lineno(tree, len(lines))  # line numbers count through the whole notebook
        body += [node for node in tree.body if is_definition(node)]
        lines += source.splitlines(keepends=True)
    filename = f"<notebook {path}>"
    linecache.cache[filename] = (len("".join(lines)), None, lines, filename)
    module = types.ModuleType("anime_gan", "The definitions of anime_gan.ipynb.")
    module.__file__ = str(path)
    exec(compile(ast.Module(body, type_ignores=[]), filename, "exec"), module.__dict__)
    return module


def default_parameters(path=NOTEBOOK):
    """Every knob's default, as {"EPOCHS": 25, ...}: the Advanced settings form and the `parameters` form (the
    cells of `# @param` fields), run in notebook order."""
    values = {}
    for cell in json.loads(Path(path).read_text(encoding="utf-8"))["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and "# @param" in source:
            exec(source, {}, values)
    return values
