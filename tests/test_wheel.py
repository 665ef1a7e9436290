"""The package as users get it: `python -m build` makes an sdist and, from it, a wheel; the wheel, installed into a
fresh virtualenv, runs from a directory outside the repository with its bundled configs and corpus.

Offline and fast: the build uses the installed setuptools (no isolation) and the fresh virtualenv borrows the
running environment's dependencies (a .pth line), so only charlstm itself comes from the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

import charlstm

ROOT = Path(__file__).resolve().parent.parent
# What building needs from the checkout; the sdist made from this copy must be enough to build the wheel.
SOURCES = ("pyproject.toml", "README.md", "charlstm", "configs", "corpora")

pytestmark = pytest.mark.slow  # builds a wheel and installs it into a fresh virtualenv


@dataclass(frozen=True)
class Installed:
    wheel: Path
    sdist: Path
    python: Path  # the fresh virtualenv's interpreter
    scripts: Path  # its bin/ directory, holding the `charlstm` entry point
    site_packages: Path
    workdir: Path  # an empty directory outside the repository
    env: dict[str, str]

    def charlstm(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(self.scripts / "charlstm"), *args],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=timeout,
        )
        assert proc.returncode == 0, f"charlstm {' '.join(args)}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc


def _run(cmd: list[str], **kwargs: object) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, **kwargs)  # type: ignore[call-overload]
    assert proc.returncode == 0, f"{' '.join(cmd)}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    work = tmp_path_factory.mktemp("wheel")
    # Built from a copy, so the build's egg-info and build/ never land in the checkout other tests import.
    src = work / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, src / name)
    dist = work / "dist"
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(src)])
    (wheel,), (sdist,) = dist.glob("*.whl"), dist.glob("*.tar.gz")

    venv = work / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    paths = json.loads(_run([str(python), "-c", "import json, sysconfig; print(json.dumps(sysconfig.get_paths()))"]))
    site_packages, scripts = Path(paths["purelib"]), Path(paths["scripts"])
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            str(wheel),
        ]
    )
    # Then the dependencies (not before: pip would find the running environment's charlstm and skip the wheel).
    # Plain path lines, appended after the venv's own site-packages: the wheel's charlstm comes first, and the
    # running environment's .pth files (an editable charlstm's among them) are not processed.
    (site_packages / "_running_env.pth").write_text("".join(p + "\n" for p in site.getsitepackages()))

    workdir = work / "elsewhere"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "FORCE_COLOR"))}
    env.update(
        JAX_PLATFORMS="cpu",
        NO_COLOR="1",
        COLUMNS="400",  # wide enough for the deepest temporary path
        PYTHONIOENCODING="utf-8",
        CHARLSTM_CACHE=str(work / "cache"),
        PATH=os.pathsep.join([str(scripts), env.get("PATH", "")]),
    )
    return Installed(wheel, sdist, python, scripts, site_packages, workdir, env)


def test_the_wheel_ships_the_configs_and_corpora(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    for directory in ("configs", "corpora"):
        bundled = {p.name for p in (ROOT / directory).iterdir() if p.is_file()}
        assert bundled and {f"charlstm/{directory}/{n}" for n in bundled} <= names, sorted(names)
    assert "charlstm/resources.py" in names
    assert not any(n.startswith(("tests/", "configs/", "corpora/", "benchmarks/")) for n in names)


def test_the_sdist_keeps_the_repository_layout(installed: Installed) -> None:
    top = installed.sdist.name.removesuffix(".tar.gz")
    with tarfile.open(installed.sdist) as tar:
        names = set(tar.getnames())
    for path in (
        "pyproject.toml",
        "README.md",
        "charlstm/cli/__init__.py",
        "configs/tiny.yaml",
        "corpora/languages.txt",
    ):
        assert f"{top}/{path}" in names


def test_the_fresh_virtualenv_imports_the_wheel_not_the_checkout(installed: Installed) -> None:
    code = "import charlstm, charlstm.resources as r; print(charlstm.__file__); print(r.data_dir('configs'))"
    module, configs = _run([str(installed.python), "-c", code], cwd=installed.workdir, env=installed.env).split()
    assert Path(module).is_relative_to(installed.site_packages / "charlstm")
    assert Path(configs) == installed.site_packages / "charlstm" / "configs"


def test_version(installed: Installed) -> None:
    version = installed.wheel.name.split("-")[1]
    assert version == charlstm.__version__
    assert installed.charlstm("--version").stdout.strip() == f"charlstm {version}"


def test_corpus_list_shows_the_bundled_corpus(installed: Installed) -> None:
    out = installed.charlstm("corpus", "list").stdout
    row = next(line for line in out.splitlines() if "languages" in line)
    assert "bundled" in row and str(installed.site_packages / "charlstm" / "corpora" / "languages.txt") in row
    essay = next(line for line in out.splitlines() if "essay" in line)  # the essay corpus ships too
    assert "bundled" in essay and (installed.site_packages / "charlstm" / "corpora" / "essay.gaps.json").is_file()


def test_train_a_bundled_config_on_the_bundled_corpus_then_sample(installed: Installed) -> None:
    installed.charlstm(
        "train",
        "--config",
        "tiny",
        "--name",
        "tiny",
        "--set",
        "train.steps=4",
        "--set",
        "train.eval_every=2",
        "--set",
        "checkpoint.every=2",
    )
    run = installed.workdir / "runs" / "tiny"
    assert json.loads((run / "run.json").read_text())["corpus"].startswith(str(installed.site_packages))
    symbols = json.loads((run / "vocab.json").read_text())["symbols"]

    out = installed.charlstm("sample", "--length", "40", "--seed", "3", "--prompt", "The ").stdout
    assert out.startswith("The ")
    generated = out.removeprefix("The ").removesuffix("\n")
    assert len(generated) == 40 and {ord(c) for c in generated} <= set(symbols), repr(out)


def test_the_wheel_ships_the_web_pages(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    page = {p.name for p in (ROOT / "charlstm" / "serve" / "static").iterdir() if p.is_file()}
    assert {"index.html", "app.js", "style.css"} <= page
    assert {f"charlstm/serve/static/{n}" for n in page} <= names and "charlstm/serve/app.py" in names
    assert {"charlstm/nn/web/model.js", "charlstm/nn/web/page.html"} <= names  # export --out model.html
