"""A session's environment sees the platform's packages: the server runs from a real virtualenv
holding a package the base interpreter lacks, and a session that ships a requirements.txt
imports it, `nsml`, and what its own requirements add; what is already satisfied is not
installed again. Offline: the packages are wheels built here."""

import base64
import hashlib
import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO, Server, cli_in, kill_leftover_supervisors, push_dataset, start_session, write_project

PLATFORM_PKG = "nsml_test_platform_pkg"  # installed next to the platform only
SESSION_PKG = "nsml_test_session_pkg"  # installed by the session's requirements.txt


def make_wheel(folder: Path, name: str, version: str = "1.0") -> Path:
    """A pure-Python wheel holding module `name` (what pip installs without building anything)."""
    files = {
        f"{name}/__init__.py": f"WHO = {name!r}\n".encode(),
        f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{name}-{version}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: nsml-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = f"{name}-{version}.dist-info/RECORD"
    lines = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        lines.append(f"{path},sha256={digest},{len(data)}")
    files[record] = ("\n".join(lines + [f"{record},,"]) + "\n").encode()
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return wheel


def run(*argv, env=None) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, f"{argv} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def platform_venv(root: Path) -> Path:
    """A virtualenv made from this interpreter, holding PLATFORM_PKG, able to run the server.

    The server's own dependencies (fastapi, ...) come from this interpreter's site folders, added
    the way a layered environment adds them; nsml comes from there too where it is installed
    (editable, in a checkout), else from an old-style editable .pth line pointing at the repo."""
    run(sys.executable, "-m", "venv", "--without-pip", root)
    python = root / "bin" / "python"
    own = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    outer = ([site.getusersitepackages()] if site.ENABLE_USER_SITE else []) + site.getsitepackages()
    (own / "_outer.pth").write_text(f"import site; list(map(site.addsitedir, {outer!r}))\n")
    bare = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if subprocess.run([python, "-c", "import nsml"], env=bare, capture_output=True).returncode != 0:
        (own / "nsml-checkout.pth").write_text(str(REPO) + "\n")
    run(python, "-m", "pip", "install", "--no-index", "--no-deps", "--disable-pip-version-check", "-q",
        make_wheel(root.parent, PLATFORM_PKG), env={**bare, "PIP_NO_INDEX": "1"})
    return python


MAIN = f'''
import sys
import nsml, {PLATFORM_PKG}, {SESSION_PKG}
print("python", sys.executable)
for module in (nsml, {PLATFORM_PKG}, {SESSION_PKG}):
    print("imported", module.__name__, "from", module.__file__)
'''


def test_a_session_with_requirements_sees_the_platform_venv(tmp_path):
    base = getattr(sys, "_base_executable", sys.executable)
    assert subprocess.run([base, "-I", "-c", f"import {PLATFORM_PKG}"], capture_output=True).returncode != 0
    python = platform_venv(tmp_path / "platform")
    session_wheel = make_wheel(tmp_path, SESSION_PKG)
    # No PYTHONPATH: sessions must find nsml the way the platform does. No index: offline.
    srv = Server(tmp_path / "home", python=str(python), env={"PYTHONPATH": "", "PIP_NO_INDEX": "1"}).start()
    try:
        cli = cli_in(srv, tmp_path / "work")
        write_project(cli.cwd, MAIN, **{"requirements.txt": f"{PLATFORM_PKG}==1.0\n{session_wheel}\n"})
        push_dataset(cli, "envs")
        name = start_session(cli, "-d", "envs")
        info = srv.wait(name)
        logs = cli("logs", name).stdout
        assert info["status"] == "exited", logs
        assert f"imported nsml from {REPO / 'nsml' / '__init__.py'}" in logs
        assert f"imported {PLATFORM_PKG} from {tmp_path / 'platform'}" in logs
        env_root = srv.home / "envs"
        assert f"imported {SESSION_PKG} from {env_root}" in logs  # installed into the session's env
        assert f"python {env_root}" in logs
        # pip saw the platform's copy: nothing of it was installed into the session's environment.
        assert f"Requirement already satisfied: {PLATFORM_PKG}==1.0" in logs
        assert not list(env_root.glob(f"*/lib/python*/site-packages/{PLATFORM_PKG}*"))
        assert list(env_root.glob(f"*/lib/python*/site-packages/{SESSION_PKG}-1.0.dist-info"))
        # The same requirements again: the environment is reused, nothing is installed.
        again = start_session(cli, "-d", "envs")
        assert srv.wait(again)["status"] == "exited"
        assert "installing requirements" not in cli("logs", again).stdout
    finally:
        srv.stop()
        kill_leftover_supervisors(srv.home)
