"""pip/venv install of the Python package (console scripts); colcon uses CMakeLists.txt."""
from setuptools import setup

setup()
