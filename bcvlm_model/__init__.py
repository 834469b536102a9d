"""bcvlm_model: the co-attention mammography vision-language model, its data layer and training loops (no Flower)."""

TASKS: tuple[str, ...] = ("malignancy", "calcification")
"""Output heads, in logit-column order: logits[:, 0] is malignancy, logits[:, 1] suspicious calcification."""

__version__ = "0.1.0"
