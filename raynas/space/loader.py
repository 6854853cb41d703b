"""Load a ``SearchSpace`` from a YAML file or the name of a shipped space."""

from __future__ import annotations

import os
from pathlib import Path

import raynas.space.families  # noqa: F401  (registers the built-in families)
from raynas.errors import SpaceError
from raynas.space._family import family, known_families
from raynas.space.reader import Node, read_yaml
from raynas.space.search_space import SearchSpace

SHIPPED_DIR = Path(__file__).parents[1] / "search_spaces"
"""The package's copy of the top-level ``search_spaces/`` (a link in a checkout, files in a wheel)."""
COMMON_KEYS = ("name", "family", "description", "notes")


def shipped_spaces() -> dict[str, Path]:
    """Name -> path of every space file shipped in ``search_spaces/`` (or $RAYNAS_SPACES)."""
    folder = Path(os.environ.get("RAYNAS_SPACES", SHIPPED_DIR))
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def resolve_space_path(name_or_path: str | os.PathLike[str]) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise SpaceError(f"{path}: space file not found")
        return path
    shipped = shipped_spaces()
    if str(name_or_path) not in shipped:
        raise SpaceError(f"unknown space {str(name_or_path)!r}; shipped spaces: {sorted(shipped)}, or pass a .yaml path")
    return shipped[str(name_or_path)]


def load_space(name_or_path: str | os.PathLike[str]) -> SearchSpace:
    """Parse and validate a space file; errors name the file, the key path and the rule."""
    path = resolve_space_path(name_or_path)
    data = read_yaml(path, SpaceError)
    return space_from_dict(data, source=path.name, default_name=path.stem)


def space_from_dict(data: object, source: str = "<dict>", default_name: str = "space") -> SearchSpace:
    """Build a space from an already-parsed mapping (used by checkpoints, which embed their space)."""
    root = Node(data, source)
    if not isinstance(data, dict):
        raise root.error(f"a space file must be a mapping, got {type(data).__name__}")
    if "family" not in data:
        raise root.error(f"missing required key 'family'; known families: {known_families()}")
    chosen = family(root.child("family").one_of(known_families()))
    root.mapping(["family"], [*COMMON_KEYS, *chosen.keys])
    spec = chosen.parse(root)
    name = root.get("name", default_name).value
    return SearchSpace(name=str(name), family=chosen.name, spec=spec, source=source, definition=dict(data))
