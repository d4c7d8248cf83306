"""Diffusion guidance: model loading, personalisation (METHOD section 3) and VT-SDS (METHOD section 4).

Modules, one role each:
    loading         load_diffusion(model, device) -> DiffusionModel; DiffusionModelNotFound
    small_model     write_small_model(folder, SmallModelConfig): a small SD-layout model with random weights
    char_tokenizer  the CLIP BPE vocabulary of the small models (every character is a token)
    text_cache      prompt embeddings computed once
    prediction      epsilon / v / x0 conversions and training targets
    identifiers     rare per-keyframe identifiers and prompts
    imaging         the square crop + resize shared by training and guidance
    adapters        LoRA on the UNet attention projections, saved as diffusers loads it
    class_images    prior-preservation images, cached on disk
    personalize     personalize(keyframes, images, base, PersonalizeConfig, output)
    personalized    load_personalization(folder, base) -> PersonalizedModel
    schedules       annealed t_max and w(t)
    vtsds           combine_noise_predictions (Eq. 10), v_for_timestep, VTSDSGuidanceConfig / VTSDSGuidance
    regularizers    opacity_entropy (Eq. 9)
"""
