"""Stage-2 denoisers eps_theta(z_t, t), registered by name in `harness.models.STAGE2`."""
