"""What a user installs: the wheel built from this checkout holds the package with its data files
(the grammar, programs/, manifests/), and nothing of the tests."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", str(REPO), "-w", str(out)], check=True, cwd=out)
    (whl,) = out.glob("kubectl_pytrace-*.whl")
    return whl


def test_the_wheel_ships_the_programs_and_the_grammar(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    programs = sorted(p.name for p in (REPO / "programs").glob("*.bt"))
    assert programs, "programs/ is empty"
    for name in programs:
        assert f"kubectl_pytrace/programs/{name}" in names
    for p in sorted((REPO / "manifests").glob("*")):
        assert f"kubectl_pytrace/manifests/{p.name}" in names
    assert "kubectl_pytrace/lang/grammar.lark" in names
    assert not [n for n in names if n.startswith("tests/")]
    # every Python package of the source tree is in it
    for init in (REPO / "kubectl_pytrace").rglob("__init__.py"):
        assert str(init.relative_to(REPO)) in names
