"""Evaluation metrics shared by tasks (pure functions on tensors / arrays)."""

from .retrieval import STANDARD_KS, first_positive_rank, nmi, recall_at_k

__all__ = ["STANDARD_KS", "first_positive_rank", "nmi", "recall_at_k"]
