"""Differential privacy: making the model DP-ready and sample-level DP-SGD with Opacus."""
