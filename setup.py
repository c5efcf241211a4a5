"""The one compiled part: nsml.report()'s fast path (nsml/client/_fastreport.c).

Optional by construction: where no C compiler or Python headers are found the build goes on
without it, and report() runs in pure Python (nsml/client/metrics.py), slower but the same.
Everything else is declared in pyproject.toml.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("nsml.client._fastreport", ["nsml/client/_fastreport.c"], optional=True)])
