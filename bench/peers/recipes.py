"""The one-shot recipes run by both sides of `make bench-peers`, in llm-compressor's layout.

Plain strings with no imports: the same text is read by our `zoo.recipes.oneshot` (in .venv)
and by llm-compressor's `oneshot` (in .venv-peers), so neither side gets a friendlier recipe.
"""

TARGETS = r"re:encoder\.encoder\.layer\.\d+\..*(query|key|value|dense)$"

_SPARSEGPT = """
sparsity_stage:
  sparsity_modifiers:
    SparseGPTModifier:
      targets: ['{targets}']
      sparsity: 0.5
      mask_structure: '{mask}'
      block_size: 128
      dampening_frac: 0.01
"""
_WANDA = """
sparsity_stage:
  sparsity_modifiers:
    WandaPruningModifier:
      targets: ['{targets}']
      sparsity: 0.5
"""
_GPTQ = """
quant_stage:
  quant_modifiers:
    GPTQModifier:
      targets: ['{targets}']
      ignore: [classifier]
      scheme: {scheme}
      block_size: 128
      dampening_frac: 0.01
      actorder: static
"""

RECIPES: dict[str, str] = {
    "sparsegpt_50": _SPARSEGPT.format(targets=TARGETS, mask="0:0"),
    "sparsegpt_2of4": _SPARSEGPT.format(targets=TARGETS, mask="2:4"),
    "wanda_50": _WANDA.format(targets=TARGETS),
    "gptq_w4a16_g128": _GPTQ.format(targets=TARGETS, scheme="W4A16"),
    "gptq_w8a16": _GPTQ.format(targets=TARGETS, scheme="W8A16"),
}
