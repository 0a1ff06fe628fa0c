"""A regular (non-editable) install imports, and a user's own tools.py/graph.py cannot shadow it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent

pytestmark = pytest.mark.slow  # builds and pip-installs the package


def test_wheel_install_imports_and_is_not_shadowed(tmp_path: Path) -> None:
    target = tmp_path / "site"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    assert (target / "langfusion" / "graph" / "fusion.py").exists()
    assert (target / "langfusion" / "tools" / "py.typed").exists()
    assert not (target / "langfusion" / "__init__.py").exists()  # an implicit namespace
    for top in ("graph", "tools"):
        for package in (ROOT / top).rglob("__init__.py"):
            installed = target / "langfusion" / package.relative_to(ROOT)
            assert installed.exists(), f"{package.parent.relative_to(ROOT)} is not installed"

    project = tmp_path / "user_project"
    project.mkdir()
    (project / "tools.py").write_text("raise RuntimeError('the user tools.py was imported')\n")
    (project / "graph.py").write_text("raise RuntimeError('the user graph.py was imported')\n")
    # `python -c` in the user's folder puts that folder first on sys.path.
    script = (
        "import sys, langfusion.graph, langfusion.tools\n"
        "assert langfusion.graph.__file__.startswith(sys.argv[1]), langfusion.graph.__file__\n"
        "print(langfusion.graph.FusionContext.__name__, langfusion.tools.FusionTool.__name__)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(target)}
    run = subprocess.run(
        [sys.executable, "-c", script, str(target)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=project,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["FusionContext", "FusionTool"]
