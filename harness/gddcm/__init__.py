"""gDDCM (seed 002): a trained diffusion model as an image tokenizer.

Modules, one job each: `marginal` (Eq. 8 and Eq. 16 for every diffusion variant),
`codebook` (per-step codebooks from (seed, step) and the selection of Eq. 14 / 15),
`steps` (the de-noise and back-trace updates, Eqs. 11, 18, 22), `timesteps` (Eqs. 9, 10,
12, 13), `inits` (section 3.1.3), `algorithms` (Algorithms 1 and 2), `tokens` (the token
file), `model` (what is tokenized with: denoiser, marginal, data conversions), `api`
(encode / decode / tokenize_and_reconstruct), `config` (GDDCMConfig), `cli`
(`harness tokenize`).
"""

from harness.gddcm.cli import add_commands

__all__ = ["add_commands"]
