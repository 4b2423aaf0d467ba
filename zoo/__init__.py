"""A sparse-model zoo: recipes, reproducible pipelines, a versioned index and a client.

Importing `zoo` does no work: no I/O, no network, no environment reads.
"""

from zoo.errors import ZooError
from zoo.models import get_model, list_models, register_model

__all__ = ["ZooError", "get_model", "list_models", "register_model"]
__version__ = "0.1.0"
