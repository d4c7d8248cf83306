"""Diffusion guidance: model loading, personalisation (METHOD section 3) and VT-SDS (METHOD section 4).

Modules, one role each:
    loading         load_diffusion(model, device) -> DiffusionModel; DiffusionModelNotFound
    text_cache      prompt embeddings computed once
    prediction      epsilon / v / x0 conversions and training targets
    imaging         the square crop + resize shared by training and guidance
    adapters        LoRA on the UNet attention projections, saved as diffusers loads it
    personalization/  the fine-tune on the keyframes (finetune), loading its result (personalized_model), the
                    identifiers and the prior-preservation class images
    relevance       where an edit prompt acts on an image (the edit region's evidence)
    schedules       annealed t_max and w(t)
    vtsds           combine_noise_predictions (Eq. 10), v_for_timestep, VTSDSGuidanceConfig / VTSDSGuidance
"""
