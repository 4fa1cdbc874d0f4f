"""Stage-1 autoencoders E, D (LDM section 3.1), registered by name in `harness.models.STAGE1`."""
