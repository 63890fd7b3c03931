"""What a user installs: the wheel built from this checkout holds the package with its data files
(the grammar, programs/, manifests/), and nothing of the tests."""

from __future__ import annotations

import os
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


def test_the_installed_wheel_renders_a_job_from_its_own_manifests(wheel, tmp_path):
    """Installed elsewhere (a fresh venv, run from another directory), the plugin finds its
    templates and programs inside the package."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-deps", "--disable-pip-version-check",
                    str(wheel)], check=True)
    # the dependencies from this checkout's environment; the package itself only from the wheel
    import site
    deps = [p for p in site.getsitepackages() if "site-packages" in p]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(deps), "KUBECONFIG": "/nonexistent", "HOME": str(tmp_path)}
    p = subprocess.run([str(venv / "bin" / "kubectl-pytrace"), "run", "node/worker-1", "--dry-run=client",
                        "-e", "tracepoint:sched:sched_switch { @ = count(); }"], capture_output=True, text=True,
                       cwd=tmp_path, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    import yaml

    cm, job = yaml.safe_load_all(p.stdout)
    assert job["kind"] == "Job" and job["spec"]["template"]["spec"]["nodeName"] == "worker-1"
    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import kubectl_pytrace, kubectl_pytrace.resources as r; "
                            "print(kubectl_pytrace.__file__); print(r.resource_dir('programs'))"],
                           capture_output=True, text=True, cwd=tmp_path, env=env, check=True).stdout.split()
    assert all(w.startswith(str(venv)) for w in where), where
    assert sorted(os.listdir(where[1])) == sorted(p.name for p in (REPO / "programs").glob("*.bt"))


def test_the_krew_manifest_names_this_version():
    import yaml

    from kubectl_pytrace import __version__

    doc = yaml.safe_load((REPO / "plugin.yaml").read_text())
    assert doc["kind"] == "Plugin" and doc["metadata"]["name"] == "pytrace"
    assert doc["spec"]["version"] == f"v{__version__}"
    for platform in doc["spec"]["platforms"]:
        assert f"v{__version__}" in platform["uri"] and platform["bin"] == "kubectl-pytrace"
        assert len(platform["sha256"]) == 64
