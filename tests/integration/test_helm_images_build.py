"""The images' wheel stage, run as the Dockerfiles run it, without a container engine.

No engine runs here, so the images are not built; but their first stage is only
``pip wheel`` on the paths they COPY. That is done for real on a folder holding exactly
those paths (less what the Dockerfile's .dockerignore drops): the wheel must come out
under the very name the final stage installs (its EGI_HUB_VERSION), with egi-hub's
notebook-side config files and packages in it.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.unit.test_helm_images import IMAGES, ROOT, final_stage, instructions

KINDS = ("hub", "singleuser")


def wheel_stage(kind: str) -> tuple[list[str], str]:
    """The wheel stage's COPY sources and its pip command."""
    steps = instructions(IMAGES / kind / "Dockerfile")
    stage = steps[: steps.index(final_stage(steps)[0])]
    sources = [
        source for step in stage if step.name == "COPY" for source in shlex.split(step.args)[:-1]
    ]
    (run,) = [step.args for step in stage if step.name == "RUN"]
    return sources, run


def test_both_images_build_the_same_wheel() -> None:
    assert wheel_stage("hub") == wheel_stage("singleuser")


def test_the_wheel_stage_builds_the_wheel_the_final_stage_installs(tmp_path: Path) -> None:
    sources, run = wheel_stage("hub")
    assert run == "pip wheel --no-cache-dir --no-deps --wheel-dir /wheels ."
    context = tmp_path / "src"
    context.mkdir()
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")  # as Dockerfile.dockerignore
    for source in sources:
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, context / source, ignore=skip)
        else:
            shutil.copy2(ROOT / source, context / source)
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", *run.split()[1:-3], "--wheel-dir", str(wheels), "."],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    for kind in KINDS:
        final = final_stage(instructions(IMAGES / kind / "Dockerfile"))
        version = next(s.args for s in final if s.name == "ARG").partition("=")[2]
        assert (wheels / f"egi_hub-{version}-py3-none-any.whl").is_file(), kind
    (wheel,) = wheels.iterdir()
    names = set(zipfile.ZipFile(wheel).namelist())
    data = f"{wheel.name.split('-py3')[0]}.data/data"
    assert f"{data}/etc/jupyter/jupyter_server_config.d/egi_hub.json" in names
    assert f"{data}/share/jupyter/lab/settings/overrides.d/egi_hub.json" in names
    for module in ("egi_hub/singleuser/mounts.py", "egi_hub/carmin/__init__.py"):
        assert module in names
    assert "egi_hub/helm/cull.py" in names  # the hub's side of the chart
    assert not [n for n in names if "__pycache__" in n]
