"""Bundled model files (package data), found with importlib.resources."""
