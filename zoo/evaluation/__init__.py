"""Measuring models: accuracy and agreement, and CPU speed, memory and size."""
