"""Evaluation metrics: exact W1 and mode statistics for the toy sets."""
