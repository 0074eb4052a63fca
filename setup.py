"""Build script: only the compiled core lives here; all metadata is in pyproject.toml."""

from setuptools import setup

setup()
