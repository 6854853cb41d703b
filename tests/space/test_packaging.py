"""A regular install (a wheel, not ``pip install -e``) ships every space file of ``search_spaces/``."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_a_wheel_carries_the_shipped_spaces_and_loads_them(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "dist"), str(REPO)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("raynas-*.whl")
    shipped = sorted(str(p.relative_to(REPO)) for p in (REPO / "search_spaces").rglob("*.yaml"))
    with zipfile.ZipFile(wheel) as archive:
        packaged = sorted(name.removeprefix("raynas/") for name in archive.namelist()
                          if name.startswith("raynas/search_spaces/"))
        archive.extractall(tmp_path / "site")
    assert packaged == shipped
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    probe = ("import raynas; from raynas.space.loader import shipped_spaces, load_space; "
             "print(raynas.__file__); print(sorted(shipped_spaces())); print(load_space('nb201').name)")
    out = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path, check=True,
                         capture_output=True, text=True).stdout.splitlines()
    assert out[0].startswith(str(tmp_path / "site"))  # the installed copy, not this checkout
    assert out[1] == str(sorted(Path(p).stem for p in shipped if "/" not in p.removeprefix("search_spaces/")))
    assert out[2] == "nb201"
