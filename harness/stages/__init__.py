"""The stages of a trial, each trained or evaluated once and cached: `stage1` (autoencoder),
`stage2` (latent denoiser), `generate` (samples and their metrics), `tokenize` (gDDCM)."""
