"""The logic behind the DVC stages; `pipelines/*.py` only parse arguments and call it."""
