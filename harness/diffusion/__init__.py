"""Diffusion: noise schedules, training objectives and samplers, separate from the models."""
