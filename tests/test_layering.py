"""One-way layers: ``raynas.search`` plans and runs searches without importing ``raynas.train``.

The check reads the source with ``ast``, so it also sees imports made lazily inside functions,
which importing the package would not run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import raynas

PACKAGE = Path(raynas.__file__).parent
FORBIDDEN = {"raynas.search": "raynas.train"}
"""Layer -> a package it must not import: the search driver plans without the training layer."""
ALLOWED: dict[str, set[str]] = {"raynas.search": set()}
"""Modules of a layer allowed to import the forbidden one, named explicitly; there are none."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, package: str) -> set[str]:
    """Every module ``source`` (a module of ``package``) imports, at the top or inside a function,
    relative imports resolved; ``importlib.import_module("...")`` with a literal name counts too."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            found.update({module, *(f"{module}.{alias.name}" for alias in node.names)})
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            found.update(arg.value for arg in node.args[:1] if isinstance(arg, ast.Constant))
    return found


def package_of(path: Path) -> str:
    name = module_name(path)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def is_within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.mark.parametrize("layer, forbidden", sorted(FORBIDDEN.items()))
def test_a_layer_does_not_import_the_forbidden_one(layer, forbidden):
    folder = PACKAGE.parent.joinpath(*layer.split("."))
    offenders = {module_name(path): sorted(m for m in imported_modules(path.read_text(), package_of(path))
                                           if is_within(m, forbidden))
                 for path in sorted(folder.rglob("*.py"))}
    offenders = {k: v for k, v in offenders.items() if v and k not in ALLOWED[layer]}
    assert not offenders, f"{layer} must not import {forbidden}, got {offenders}"


def test_the_scan_sees_lazy_and_relative_imports():
    source = ("def f():\n    from ..train import config\n    import raynas.train.loop\n"
              "    importlib.import_module('raynas.train.api')\n")
    expected = {"raynas.train", "raynas.train.config", "raynas.train.loop", "raynas.train.api"}
    assert expected <= imported_modules(source, "raynas.search")


def test_raynas_train_loads_its_public_names_on_first_use():
    import importlib

    import raynas.train as train

    assert sorted(train.__all__) == sorted(train._HOMES)  # one list of public names
    for name in train.__all__:
        assert getattr(train, name) is getattr(importlib.import_module(f"raynas.train.{train._HOMES[name]}"), name)
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        train.nope  # noqa: B018
