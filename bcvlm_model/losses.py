"""Multitask binary cross-entropy that ignores missing (NaN) labels, so partially labelled sites still train."""

from __future__ import annotations

import torch
import torch.nn.functional as F

REDUCTIONS = ("mean", "sum", "example_mean")


def masked_multitask_bce(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """BCE-with-logits over the labelled entries of labels [B, T] (NaN = not labelled).

    reduction "mean": average over labelled entries; "sum": their sum; "example_mean": each example's sum over
    its labelled tasks, averaged over the batch (the form whose per-example terms Opacus' loss_reduction="mean"
    assumes). A batch with no labelled entry gives 0 that still backpropagates (zero gradients).
    """
    if logits.shape != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} must have the same shape")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction={reduction!r}: must be one of {', '.join(REDUCTIONS)}")
    labelled = ~torch.isnan(labels)
    targets = torch.where(labelled, labels, torch.zeros_like(labels)).to(logits.dtype)
    per_entry = F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * labelled.to(logits.dtype)
    if reduction == "sum":
        return per_entry.sum()
    if reduction == "example_mean":
        return per_entry.sum(dim=1).mean()
    return per_entry.sum() / labelled.sum().clamp_min(1).to(logits.dtype)
