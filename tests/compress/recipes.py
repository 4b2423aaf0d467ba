"""Recipes the compression tests run through the zoo's own oneshot()."""

from __future__ import annotations

# Two stages: a pruning modifier's finalize, run after a PTQ in the same stage, looks for
# float parameters the int8 model no longer has.
PRUNE_THEN_PTQ = """
stages:
  prune:
    run_type: oneshot
    modifiers:
      - {type: OneShotMagnitudePruningModifier, sparsity: 0.9}
  quantize:
    run_type: oneshot
    modifiers:
      - {type: PostTrainingQuantizationModifier, num_calibration_steps: 4}
"""


def recipe(*modifiers: str) -> str:
    """A one-stage oneshot recipe from flow-style modifier lines."""
    lines = "".join(f"      - {m}\n" for m in modifiers)
    return f"stages:\n  s:\n    run_type: oneshot\n    modifiers:\n{lines}"
