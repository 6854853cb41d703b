"""The README's Python example runs as written: a user who pastes it gets a child folder back."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_the_readme_has_a_python_example():
    assert python_blocks(), f"{README} lost its Python example"


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_every_python_block_of_the_readme_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the example writes out/child where it runs
    block = python_blocks()[index]
    exec(compile(block, f"README.md python block {index}", "exec"), {})
    for folder in re.findall(r'save_child\(.*?"([^"]+)"', block):
        assert (tmp_path / folder / "arch.json").is_file(), f"block {index} saved no child in {folder}"
