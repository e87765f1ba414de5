"""The layout's limits (issues 13 and 25), run by `make lint`: in src/, no module over 400 lines,
no function over 60, no function with more than 6 parameters (`self`/`cls` aside; a dataclass's
generated `__init__` is not a function here), and no file name used twice outside `cli/` (whose
modules are named after their command groups). Prints every offender and exits 1 when there is
one; ends with the sizes and the number of `Any` in src/ (a word count, as `grep -rwo Any`).
"""

from __future__ import annotations

import ast
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400
MAX_PARAMETERS = 6
SHARED_NAMES = {"__init__.py", "__main__.py"}  # a package's own files
NAMED_BY_COMMAND = "cli"  # a folder whose modules may share names with others


@dataclass
class Sizes:
    modules: dict[str, int] = field(default_factory=dict)  # path -> lines
    functions: dict[str, int] = field(default_factory=dict)  # path:line name -> lines
    parameters: dict[str, int] = field(default_factory=dict)  # path:line name -> parameters
    names: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    inner_imports: int = 0  # imports of the package's own modules inside functions
    any_count: int = 0


def _own_import(node: ast.AST, package: str) -> bool:
    if isinstance(node, ast.ImportFrom):
        return (node.module or "").split(".")[0] == package
    return isinstance(node, ast.Import) and any(a.name.split(".")[0] == package for a in node.names)


def _parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    args = node.args
    named = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    if named and named[0].arg in ("self", "cls"):
        named = named[1:]
    return len(named) + (args.vararg is not None) + (args.kwarg is not None)


def measure(root: Path) -> Sizes:
    sizes = Sizes()
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        sizes.modules[str(path)] = len(text.splitlines())
        sizes.any_count += len(re.findall(r"\bAny\b", text))
        if path.name not in SHARED_NAMES and NAMED_BY_COMMAND not in path.relative_to(root).parts:
            sizes.names[path.name].append(str(path))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                where = f"{path}:{node.lineno} {node.name}"
                sizes.functions[where] = (node.end_lineno or node.lineno) - node.lineno + 1
                sizes.parameters[where] = _parameters(node)
                inner = [n for n in ast.walk(node) if _own_import(n, root.name)]
                sizes.inner_imports += len(inner)
    return sizes


def offenders(sizes: Sizes) -> list[str]:
    found = [
        f"{path}: module of {lines} lines (limit {MAX_MODULE_LINES})"
        for path, lines in sizes.modules.items()
        if lines > MAX_MODULE_LINES
    ]
    found += [
        f"{where} has {lines} lines (limit {MAX_FUNCTION_LINES})"
        for where, lines in sizes.functions.items()
        if lines > MAX_FUNCTION_LINES
    ]
    found += [
        f"{where} has {count} parameters (limit {MAX_PARAMETERS})"
        for where, count in sizes.parameters.items()
        if count > MAX_PARAMETERS
    ]
    found += [
        f"file name {name} used {len(paths)} times: {', '.join(paths)}"
        for name, paths in sorted(sizes.names.items())
        if len(paths) > 1
    ]
    return found


def main(argv: list[str]) -> int:
    root = Path(argv[1] if len(argv) > 1 else "src/movierec")
    sizes = measure(root)
    found = offenders(sizes)
    for line in found:
        print(line)
    largest = max(sizes.modules.items(), key=lambda kv: kv[1])
    longest = max(sizes.functions.items(), key=lambda kv: kv[1])
    widest = max(sizes.parameters.items(), key=lambda kv: kv[1])
    print(
        f"{len(sizes.modules)} modules; largest {largest[0]} ({largest[1]} lines); longest "
        f"function {longest[0]} ({longest[1]} lines); most parameters {widest[0]} "
        f"({widest[1]}); {sizes.inner_imports} imports of {root.name} modules inside "
        f"functions; Any: {sizes.any_count}"
    )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
