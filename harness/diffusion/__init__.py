"""Diffusion, separate from the models: forward processes (one abstraction, Eq. 8), what the
denoiser predicts and the losses it trains with, the samplers, and classifier-free guidance
(`guidance`: a conditional model seen by every sampler as a plain one).

Processes, their losses and samplers are registered here by name (harness.registry), so the
schema checks `stage2.process` and `sample.sampler` without importing torch. A new forward
process is a class in `processes` with its factory and its loss registered below.
"""

from harness.registry import Registry

PROCESSES = Registry("forward process", {
    "ddpm": ("harness.diffusion.processes:ddpm",
             "discrete time, beta_schedule; z_t = sqrt(alpha_bar) z_0 + sqrt(1 - alpha_bar) eps"),
    "rectified_flow": ("harness.diffusion.processes:rectified_flow",
                       "z_t = (1-t) z_0 + t eps, flow matching; v is the velocity eps - z_0"),
})
LOSSES = Registry("training loss", {  # by process name
    "ddpm": ("harness.diffusion.objectives:ddpm_loss", "weighted eps/v/x0 regression"),
    "rectified_flow": ("harness.diffusion.objectives:flow_matching_loss",
                       "flow matching (seed 002 Eq. 7)"),
})
SAMPLERS = Registry("sampler", {
    "ddim": ("harness.diffusion.samplers:ddim",
             "DDIM with S = ddim_steps and eta; on rectified flow the Euler ODE (eta 0)"),
    "ddpm": ("harness.diffusion.samplers:ddpm", "DDPM ancestral sampling, all T steps"),
    # the zoo: diffusers schedulers on the trained model's own betas (harness.diffusion.zoo)
    "dpmsolver++": ("harness.diffusion.zoo:dpmsolver_pp", "DPM-Solver++(2M), multistep"),
    "unipc": ("harness.diffusion.zoo:unipc", "UniPC (bh2), multistep predictor-corrector"),
    "euler": ("harness.diffusion.zoo:euler", "Euler on the probability-flow ODE in sigma"),
    "euler_ancestral": ("harness.diffusion.zoo:euler_ancestral",
                        "Euler ancestral (stochastic, k-diffusion)"),
    "heun": ("harness.diffusion.zoo:heun", "Heun's 2nd order, NFE 2S - 1"),
    "pndm": ("harness.diffusion.zoo:pndm", "PLMS (PNDM's linear multistep), NFE S + 1; "
             "timestep_spacing leading"),
})

# What the schema checks without importing a sampler (tests/diffusion check the builders
# agree): the spacings of SampleConfig.timestep_spacing, the samplers that take only some of
# them, and the samplers of rectified_flow (its Euler ODE, equal steps in t).
SPACINGS = ("linspace", "leading", "trailing", "quadratic")
SAMPLER_SPACINGS = {
    "unipc": ("linspace", "leading", "trailing"),  # set_timesteps takes no explicit timesteps
    "euler_ancestral": ("linspace", "leading", "trailing"),  # (same)
    "pndm": ("leading",),  # steps from t to t - T // S, which only the leading grid keeps
}
FLOW_SAMPLERS = ("ddim",)
