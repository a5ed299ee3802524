"""Packages are found automatically; the top-level properties/ folder ships as recbole_msl.properties.

Everything else (metadata, dependencies, the console script) is in setup.cfg.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["recbole_msl", "recbole_msl.*"]) + ["recbole_msl.properties"],
    package_dir={"recbole_msl.properties": "properties"},
)
