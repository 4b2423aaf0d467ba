"""The repository files a stage script can execute, read from the code itself (ast).

Follows every `import` / `from ... import` of a module inside the repository, wherever it
sits in the file (stage scripts import lazily inside functions), and every string literal
naming a repository module (`"zoo.modifiers.pruning:GMPruningModifier"`): those are the
tables that `importlib.import_module` reads. Importing `a.b.c` runs `a/__init__.py` and
`a/b/__init__.py` too, so they are part of the closure. Imports under `if TYPE_CHECKING:`
never run and are skipped.

One exception keeps the closure honest rather than total: a package `__init__.py` that
defines a module `__getattr__` (PEP 562 lazy exports, like `zoo/__init__.py`'s
`{"search": "zoo.client.api", ...}`) imports a table entry only when someone asks for
that name, so an entry is followed only where the closure does `from pkg import name`
or `pkg.name`. Nothing here knows a module list: it is all computed.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path, PurePosixPath
from typing import TypeGuard

# A dotted name, optionally followed by `:attribute` (the form import tables use).
_MODULE_STRING = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)(?::\w+)?$")


class ImportClosure:
    """Resolves module names of one repository to its files and walks their imports."""

    def __init__(self, repo: Path, packages: tuple[str, ...] = ("zoo",)) -> None:
        self.repo = repo
        self.packages = packages

    def module_file(self, name: str) -> Path | None:
        if name.split(".")[0] not in self.packages:
            return None
        base = self.repo.joinpath(*name.split("."))
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
        return None

    def _with_parents(self, name: str) -> list[Path]:
        """The file of `name` and of every package above it (all run on import)."""
        parts = name.split(".")
        files = [self.module_file(".".join(parts[:i])) for i in range(1, len(parts) + 1)]
        return [f for f in files if f is not None]

    def _module_name(self, path: Path) -> str:
        rel = path.relative_to(self.repo).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        return ".".join(parts)

    def lazy_exports(self, package: str) -> dict[str, str]:
        """name -> module of a PEP 562 lazy-export table in `package`'s __init__.py."""
        init = self.module_file(package)
        if init is None or init.name != "__init__.py":
            return {}
        tree = ast.parse(init.read_text(), filename=str(init))
        if not any(isinstance(n, ast.FunctionDef) and n.name == "__getattr__" for n in tree.body):
            return {}
        table: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if _string(key) and _string(value) and _MODULE_STRING.match(value.value):
                        table[key.value] = _MODULE_STRING.match(value.value).group(1)
        return table

    def imported_files(self, path: Path) -> set[Path]:
        """Repository files that executing `path` imports directly."""
        tree = ast.parse(path.read_text(), filename=str(path))
        lazy_here = set(self.lazy_exports(self._module_name(path)).values())
        names: set[str] = set()
        for node in _runtime_nodes(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                module = self._absolute(path, node)
                names.add(module)
                lazy = self.lazy_exports(module)
                for alias in node.names:
                    # `from pkg import sub` imports the submodule pkg.sub when there is one.
                    names.add(f"{module}.{alias.name}")
                    if alias.name in lazy:
                        names.add(lazy[alias.name])
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                lazy = self.lazy_exports(node.value.id)
                if node.attr in lazy:
                    names.add(lazy[node.attr])
            elif _string(node):
                match = _MODULE_STRING.match(node.value)
                if match and match.group(1) not in lazy_here:
                    names.add(match.group(1))
        files: set[Path] = set()
        for name in names:
            if self.module_file(name) is not None:
                files.update(self._with_parents(name))
        return files

    def _absolute(self, path: Path, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        package = self._module_name(path).split(".")
        if path.name != "__init__.py":
            package = package[:-1]
        base = package[: len(package) - (node.level - 1)]
        return ".".join([*base, node.module] if node.module else base)

    def of(self, script: Path) -> set[Path]:
        """Every repository file that running `script` can import, `script` included."""
        seen: set[Path] = set()
        todo = [script.resolve()]
        while todo:
            path = todo.pop()
            if path in seen:
                continue
            seen.add(path)
            todo.extend(self.imported_files(path) - seen)
        return seen


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node except those under `if TYPE_CHECKING:` (never executed)."""
    out: list[ast.AST] = []
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return out


def _string(node: ast.AST | None) -> TypeGuard[ast.Constant]:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def covered(path: str, deps: list[str]) -> bool:
    """Whether a repository-relative file lies at or under one of the declared deps."""
    p = PurePosixPath(path)
    return any(p == PurePosixPath(d) or PurePosixPath(d) in p.parents for d in deps)


def minimal_deps(files: set[str], repo: Path) -> list[str]:
    """The shortest dep list naming exactly `files`: a folder when every Python file
    under it is in the set, the files themselves otherwise (a suggestion to paste)."""
    out: set[str] = set(files)
    changed = True
    while changed:
        changed = False
        folders = {str(PurePosixPath(f).parent) for f in out if PurePosixPath(f).parent.name}
        for folder in sorted(folders, key=lambda f: -f.count("/")):
            inside = {
                str(p.relative_to(repo))
                for p in (repo / folder).rglob("*.py")
                if "__pycache__" not in p.parts
            }
            if folder == "zoo" or not inside or not all(covered(f, sorted(out)) for f in inside):
                continue
            out = {f for f in out if not covered(f, [folder])} | {folder}
            changed = True
            break
    return sorted(out)
