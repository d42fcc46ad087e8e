"""Evaluation protocols (real and synthetic), the synthetic expression/pose regressor, result tables."""
