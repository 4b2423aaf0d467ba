"""Compressed, deployable export folders: write them (export.py), load them back (load.py)."""
