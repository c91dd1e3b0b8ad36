"""The classes and functions of a Python source file, read with `ast`."""

from __future__ import annotations

import ast
from typing import Literal

from pydantic import BaseModel

SymbolKind = Literal["class", "function", "async_function", "method", "async_method"]


class Symbol(BaseModel):
    name: str
    """Qualified within the file, e.g. `Outer.method`."""
    kind: SymbolKind
    line: int
    end_line: int
    signature: str
    """`def name(args) -> result` or `class Name(bases)`."""
    decorators: list[str]
    docstring: str | None
    """The first line of the docstring."""


def python_symbols(source: str, *, filename: str = "<file>") -> list[Symbol]:
    """Every class, function and method, in source order (nested ones after their parent)."""
    tree = ast.parse(source, filename=filename)
    symbols: list[Symbol] = []
    _collect(tree.body, prefix="", in_class=False, into=symbols)
    return symbols


def _collect(body: list[ast.stmt], *, prefix: str, in_class: bool, into: list[Symbol]) -> None:
    for node in body:
        if isinstance(node, ast.ClassDef):
            bases = ", ".join(ast.unparse(base) for base in [*node.bases, *node.keywords])
            into.append(_symbol(node, prefix, "class", f"class {node.name}({bases})"))
            _collect(node.body, prefix=f"{prefix}{node.name}.", in_class=True, into=into)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            is_async = isinstance(node, ast.AsyncFunctionDef)
            kind: SymbolKind
            if in_class:
                kind = "async_method" if is_async else "method"
            else:
                kind = "async_function" if is_async else "function"
            returns = f" -> {ast.unparse(node.returns)}" if node.returns is not None else ""
            keyword = "async def" if is_async else "def"
            signature = f"{keyword} {node.name}({ast.unparse(node.args)}){returns}"
            into.append(_symbol(node, prefix, kind, signature))
            _collect(node.body, prefix=f"{prefix}{node.name}.", in_class=False, into=into)


def _symbol(
    node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef,
    prefix: str,
    kind: SymbolKind,
    signature: str,
) -> Symbol:
    docstring = ast.get_docstring(node)
    return Symbol(
        name=f"{prefix}{node.name}",
        kind=kind,
        line=node.lineno,
        end_line=node.end_lineno or node.lineno,
        signature=signature,
        decorators=[ast.unparse(d) for d in node.decorator_list],
        docstring=docstring.strip().splitlines()[0] if docstring and docstring.strip() else None,
    )
