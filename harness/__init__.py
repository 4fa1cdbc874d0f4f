"""Benchmark and ablation harness for two-stage latent diffusion models."""

__version__ = "0.1.0"
