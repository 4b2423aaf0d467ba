"""Stores behind one interface: a local folder, S3 (boto3), a Hugging Face Hub repo."""

from zoo.storage.base import Store, Versioned, default_store_url, open_store

__all__ = ["Store", "Versioned", "default_store_url", "open_store"]
