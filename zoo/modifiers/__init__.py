"""Compression techniques, one module per family; see zoo/modifiers/base.py."""
