"""Python environments for sessions: the base interpreter plus the project's requirements.

`setup.py` is read, never executed (its install_requires are taken from the syntax tree), then
`requirements.txt`. Packages are installed into a virtualenv layered on the interpreter the
platform itself runs with: a `.pth` file in the new environment adds the platform's own site
folders (with `site.addsitedir`, so their `.pth` files run too: editable installs of `nsml`
work), after the environment's own. A session therefore imports `nsml` and everything installed
next to the platform (torch, say) whether the platform runs from a virtualenv or not
(`venv --system-site-packages` would only add the *base* interpreter's packages), and pip sees
what is installed there as satisfied instead of installing it again. Each environment is keyed
by a hash of the platform interpreter and the requirement list and kept, so a second run with the
same requirements starts at once.
"""

import ast
import fcntl
import hashlib
import importlib.util
import os
import re
import shutil
import site
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from nsml.core.errors import InvalidInput

# Bumped when the layout of a built environment changes, so older ones are not reused.
LAYOUT = 2
PLATFORM_PTH = "_nsml_platform.pth"
# Names users still write that pip no longer accepts.
RENAMED = {"sklearn": "scikit-learn"}
_IMAGE_RE = re.compile(r"^\s*#\s*nsml\s*:\s*(\S+)")


@dataclass(frozen=True)
class EnvSpec:
    requirements: tuple[str, ...]
    image: str  # from a '#nsml: IMAGE' first line; recorded and shown, not used for running


def _rename(requirement: str) -> str:
    name = re.split(r"[\s<>=!~;\[@]", requirement, maxsplit=1)[0]
    new = RENAMED.get(name.lower())
    return new + requirement[len(name):] if new else requirement


def setup_py_requires(text: str) -> list[str]:
    """install_requires of a setup.py, from its syntax tree only."""
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        raise InvalidInput(f"setup.py could not be parsed (line {exc.lineno}): {exc.msg}") from exc
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "setup":
            for kw in node.keywords:
                if kw.arg == "install_requires":
                    try:
                        value = ast.literal_eval(kw.value)
                    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                        value = None
                    if not isinstance(value, (list, tuple)):  # a bare string would split into letters
                        raise InvalidInput("setup.py's install_requires must be a literal list of strings.")
                    return [str(v) for v in value]
    return []


def requirements_txt(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            if line.startswith("-"):
                raise InvalidInput(f"requirements.txt option '{line}' is not supported; list packages one per line.")
            out.append(line)
    return out


def read_spec(code_dir: Path) -> EnvSpec:
    requirements: list[str] = []
    found: dict[str, Path] = {}
    for name, parse in (("setup.py", setup_py_requires), ("requirements.txt", requirements_txt)):
        path = code_dir / name
        if path.is_file():
            found[name] = path
            requirements += parse(path.read_text(errors="replace"))
    return EnvSpec(tuple(_rename(r) for r in requirements), read_first_line_image(found))


def platform_site_dirs() -> list[str]:
    """The site folders the platform's interpreter imports from, in its own order (the user's
    site first where it is enabled, as `site` does): a virtualenv's site-packages, and the base
    interpreter's too where that virtualenv includes them."""
    dirs = [site.getusersitepackages()] if site.ENABLE_USER_SITE else []
    dirs += site.getsitepackages()
    return [d for d in dict.fromkeys(dirs) if os.path.isdir(d)]


def env_key(spec: EnvSpec) -> str:
    """Changes with the platform interpreter (its executable, prefix, version and site folders)
    and with the requirement list, order included."""
    platform = [str(LAYOUT), sys.executable, sys.prefix, sys.version, *platform_site_dirs()]
    base = "|".join(platform) + "|" + "\n".join(spec.requirements)
    return hashlib.sha256(base.encode()).hexdigest()[:16]


def _layer_on_platform(env: Path) -> None:
    """Make the new environment see the platform's site folders, after its own."""
    own = env / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"  # venv's layout
    # One line: a .pth line that starts with `import` is executed (lines that are paths are only
    # added, and their own .pth files would not run).
    line = f"import site; list(map(site.addsitedir, {platform_site_dirs()!r}))\n"
    (own / PLATFORM_PTH).write_text(line)


def python_for(spec: EnvSpec, envs_root: Path, log) -> str:
    """The interpreter a session runs with, building (or reusing) its environment.

    `log` is a binary file the build output goes to, so users see pip's messages in `nsml logs`.
    """
    if not spec.requirements:
        return sys.executable
    envs_root.mkdir(parents=True, exist_ok=True)
    final = envs_root / env_key(spec)
    python = final / "bin" / "python"
    if (final / ".ready").exists():
        return str(python)
    with open(envs_root / f"{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two sessions with the same requirements build once
        if (final / ".ready").exists():
            return str(python)
        shutil.rmtree(final, ignore_errors=True)
        if importlib.util.find_spec("pip") is None:
            raise InvalidInput(f"The platform's interpreter ({sys.executable}) has no pip, so the project's requirements "
                               "cannot be installed; its administrator can add it: python -m ensurepip.")
        log.write(f"[nsml] installing requirements: {' '.join(spec.requirements)}\n".encode())
        log.flush()
        # pip comes from the platform's site folders, through the layer.
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(final)], check=True, stdout=log, stderr=subprocess.STDOUT)
        _layer_on_platform(final)
        result = subprocess.run(
            [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input", *spec.requirements],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PIP_PROGRESS_BAR": "off"},
        )
        if result.returncode != 0:
            shutil.rmtree(final, ignore_errors=True)
            raise InvalidInput(f"Installing the requirements failed (pip exit code {result.returncode}); see the log above.")
        (final / ".ready").touch()
    return str(python)


def read_first_line_image(files: dict[str, Path]) -> str:
    """The '#nsml: IMAGE' of an uploaded project (setup.py first), given its files' locations."""
    for name in ("setup.py", "requirements.txt"):
        if name in files:
            with open(files[name], errors="replace") as f:
                if m := _IMAGE_RE.match(f.readline()):
                    return m.group(1)
    return ""
