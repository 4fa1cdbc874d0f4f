"""Diffusion, separate from the models: forward processes (one abstraction, by name), what the
denoiser predicts and its losses, and the samplers."""
