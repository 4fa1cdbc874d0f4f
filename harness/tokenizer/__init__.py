"""gDDCM (seed 002): a trained diffusion model as an image tokenizer, as a library.

It imports only the config schema, `harness.diffusion` and the models' interfaces. Modules,
one job each: `codebook` (per-step codebooks from (seed, step), the selection of Eq. 14 /
15), `steps` (the back-trace updates, Eqs. 11 and 22), `timesteps` (Eqs. 9, 10, 12, 13),
`times` (GDDCMConfig against a model's process, default times), `inits` (section 3.1.3),
`algorithms` (Algorithms 1 and 2), `tokens` (the token file), `model` (what is tokenized
with) and `api` (encode / decode / tokenize_and_reconstruct).
"""
