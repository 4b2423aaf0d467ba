"""Deployment formats: zoo models as folders other runtimes load (compressed-tensors)."""
