"""Reading a project's requirements (setup.py parsed, never run; requirements.txt) and its image."""

import sys

import pytest

from nsml.core.errors import InvalidInput
from nsml.scheduler.environments import (EnvSpec, env_key, python_for, read_first_line_image, read_spec,
                                         requirements_txt, setup_py_requires)


def test_setup_py_is_parsed_not_executed():
    text = """\
import setuptools
raise RuntimeError('executed!')
setuptools.setup(
    name='proj',
    install_requires=['torch>=1.0', "numpy"],
)
"""
    assert setup_py_requires(text) == ["torch>=1.0", "numpy"]


def test_setup_py_variants():
    assert setup_py_requires("from setuptools import setup\nsetup(install_requires=('a', 'b==2'))\n") == ["a", "b==2"]
    assert setup_py_requires("from setuptools import setup\nsetup(name='x')\n") == []
    assert setup_py_requires("print('no setup call')\n") == []
    assert setup_py_requires("") == []


def test_setup_py_errors_are_one_clear_line():
    with pytest.raises(InvalidInput, match=r"setup.py could not be parsed \(line 2\)"):
        setup_py_requires("from setuptools import setup\nsetup(install_requires=[\n")
    with pytest.raises(InvalidInput, match="install_requires must be a literal list of strings"):
        setup_py_requires("REQS = ['a']\nsetup(install_requires=REQS + ['b'])\n")


def test_requirements_txt():
    text = "#nsml: some/image\n\n# a comment\nnumpy>=1.20  # pinned loosely\n  pandas\nscikit-learn==1.3\n"
    assert requirements_txt(text) == ["numpy>=1.20", "pandas", "scikit-learn==1.3"]
    with pytest.raises(InvalidInput, match="'-r other.txt' is not supported"):
        requirements_txt("numpy\n-r other.txt\n")


def test_read_spec_order_renames_and_image(tmp_path):
    assert read_spec(tmp_path) == EnvSpec((), "")
    (tmp_path / "requirements.txt").write_text("#nsml: floydhub/pytorch:0.3.0-gpu\nsklearn>=0.20\nSklearn\nsklearn-crfsuite\n")
    assert read_spec(tmp_path) == EnvSpec(("scikit-learn>=0.20", "scikit-learn", "sklearn-crfsuite"), "floydhub/pytorch:0.3.0-gpu")
    # setup.py's requirements come first, and its image line wins
    (tmp_path / "setup.py").write_text("# nsml: nsml/default_ml:latest\nfrom setuptools import setup\nsetup(install_requires=['numpy'])\n")
    spec = read_spec(tmp_path)
    assert spec.requirements[0] == "numpy" and spec.image == "nsml/default_ml:latest"


def test_image_only_from_the_first_line(tmp_path):
    (tmp_path / "requirements.txt").write_text("numpy\n#nsml: too/late\n")
    assert read_spec(tmp_path).image == ""
    files = {"requirements.txt": tmp_path / "requirements.txt"}
    assert read_first_line_image(files) == ""
    (tmp_path / "requirements.txt").write_text("#nsml:some/image\nnumpy\n")
    assert read_first_line_image(files) == "some/image"
    assert read_first_line_image({}) == ""


def test_env_key_depends_on_the_requirements_and_their_order():
    a = env_key(EnvSpec(("numpy", "pandas"), ""))
    assert a == env_key(EnvSpec(("numpy", "pandas"), "other/image"))  # the image is only recorded
    assert a != env_key(EnvSpec(("pandas", "numpy"), ""))
    assert a != env_key(EnvSpec(("numpy",), ""))


def test_no_requirements_means_the_base_interpreter(tmp_path):
    assert python_for(EnvSpec((), ""), tmp_path / "envs", None) == sys.executable
    assert not (tmp_path / "envs").exists()


def test_env_key_depends_on_the_platform_interpreter(monkeypatch):
    """An environment layered on one platform interpreter is never reused for another."""
    spec = EnvSpec(("numpy",), "")
    key = env_key(spec)
    monkeypatch.setattr(sys, "prefix", sys.prefix + "-other-venv")
    assert env_key(spec) != key
    monkeypatch.undo()
    monkeypatch.setattr(sys, "executable", sys.executable + "-other")
    assert env_key(spec) != key
