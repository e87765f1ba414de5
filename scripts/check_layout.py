"""Size limits of the layout (issue 13), run by `make lint`: no function in src/ over 60 lines,
no module over 400 lines. Prints every offender and exits 1 when there is one; ends with the
sizes (modules, the largest module, the longest function, our own imports inside functions).
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400


@dataclass
class Sizes:
    modules: dict[str, int] = field(default_factory=dict)  # path -> lines
    functions: dict[str, int] = field(default_factory=dict)  # path:line name -> lines
    inner_imports: int = 0  # imports of the package's own modules inside functions


def _own_import(node: ast.AST, package: str) -> bool:
    if isinstance(node, ast.ImportFrom):
        return (node.module or "").split(".")[0] == package
    return isinstance(node, ast.Import) and any(a.name.split(".")[0] == package for a in node.names)


def measure(root: Path) -> Sizes:
    sizes = Sizes()
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        sizes.modules[str(path)] = len(text.splitlines())
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                size = (node.end_lineno or node.lineno) - node.lineno + 1
                sizes.functions[f"{path}:{node.lineno} {node.name}"] = size
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
    return found


def main(argv: list[str]) -> int:
    root = Path(argv[1] if len(argv) > 1 else "src/movierec")
    sizes = measure(root)
    found = offenders(sizes)
    for line in found:
        print(line)
    largest = max(sizes.modules.items(), key=lambda kv: kv[1])
    longest = max(sizes.functions.items(), key=lambda kv: kv[1])
    print(
        f"{len(sizes.modules)} modules; largest {largest[0]} ({largest[1]} lines); longest "
        f"function {longest[0]} ({longest[1]} lines); {sizes.inner_imports} imports of "
        f"{root.name} modules inside functions"
    )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
