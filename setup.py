"""Shim for tools that still call setup.py; pyproject.toml holds the real metadata."""

from setuptools import setup

setup()
