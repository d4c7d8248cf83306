"""End to end on CPU: synth capture -> recon -> VT-SDS edit with a tiny diffusers folder -> render."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import torch
from conftest import EDIT_PROMPT_CHECKS, EDIT_STEPS, quiet_config, tiny_edit_config

from avatarstudio_ns.edit.trainer import find_checkpoint
from method_configs.edit import avatarstudio_edit_fast


def _model_state(config) -> dict[str, torch.Tensor]:
    state = torch.load(find_checkpoint(config.get_base_dir() / "nerfstudio_models"), weights_only=True)
    return {k[len("_model.") :]: v for k, v in state["pipeline"].items() if k.startswith("_model.")}


def test_edit_trains_only_the_appearance_and_keeps_the_geometry(recon, edited):
    _, recon_config = recon
    edit_config, _ = edited
    before, after = _model_state(recon_config), _model_state(edit_config)
    colour = [k for k in after if k.startswith("appearance.colour_base.")]
    # The edit adds its colour grid, the recon step it samples at (see update_to_step), a frozen copy of the
    # recon's colour MLP and its edit region.
    added = {k for k in after if k.startswith(("original_head.", "edit_region."))} | {"recon_step"}
    assert colour and before.keys() == after.keys() - set(colour) - added
    assert bool(after["edit_region.fitted"]), "the edit found no edit region"
    for key in [k for k in after if k.startswith("original_head.")]:
        assert torch.equal(after[key], before[key.replace("original_head.", "appearance.mlp_head.")])
    assert (
        int(after["recon_step"])
        == torch.load(find_checkpoint(recon_config.get_base_dir() / "nerfstudio_models"), weights_only=True)["step"]
    )
    # The deformation, codes, proposals and the canonical density (grid + density MLP) are the recon's.
    frozen = [
        k
        for k in before
        if k.startswith(("deformation.", "frame_codes.", "proposal_networks.", "appearance.mlp_base."))
    ]
    assert frozen
    for key in frozen:
        assert torch.equal(before[key], after[key]), f"{key} changed during the edit"
    # The colour grid started as a copy of the geometry's and is what the edit changed, with the colour MLP.
    changed = [k for k in colour + [k for k in after if k.startswith("appearance.mlp_head.")]]
    assert any(not torch.equal(after[k], before[k.replace("colour_base", "mlp_base")]) for k in changed), (
        "the edit left the appearance unchanged"
    )


def _edit_model_from_recon(recon, **settings):
    """The recon's pipeline as ns-eval loads it, and an edit model built with the recon's model settings and
    ``settings`` (not yet loaded with its weights)."""
    from nerfstudio.utils.eval_utils import eval_setup

    from avatarstudio_ns.edit.model import AvatarEditModelConfig

    _, recon_config = recon
    _, pipeline, _, _ = eval_setup(recon_config.get_base_dir() / "config.yml", test_mode="inference")
    recon_model = pipeline.model
    names = [f.name for f in dataclasses.fields(recon_model.config) if f.init and f.name != "_target"]
    edit_config = AvatarEditModelConfig(**{name: getattr(recon_model.config, name) for name in names}, **settings)
    edit_model = edit_config.setup(
        scene_box=recon_model.scene_box,
        num_train_data=recon_model.num_train_data,
        metadata=recon_model.kwargs["metadata"],
    )
    return pipeline, edit_model


@pytest.mark.parametrize(
    "trainable, trained",
    [
        ("colour_grid", ("colour_base.",)),
        ("colour", ("colour_base.", "mlp_head.")),
        ("all", ("mlp_base.", "mlp_head.")),
    ],
)
def test_a_recon_loads_into_the_edit_model_with_identical_renders(recon, trainable, trained):
    """Before any step, the edit model renders exactly what the recon renders, and trains what ``trainable`` says."""
    _, recon_config = recon
    pipeline, edit_model = _edit_model_from_recon(recon, trainable=trainable)
    recon_model = pipeline.model
    # eval_setup loaded the recon's last checkpoint; the edit samples as the recon did at that step.
    checkpoint = find_checkpoint(recon_config.get_base_dir() / "nerfstudio_models")
    edit_model.start_from_recon_step(torch.load(checkpoint, weights_only=True)["step"])
    edit_model.load_state_dict(recon_model.state_dict())
    edit_model.eval()
    camera = pipeline.datamanager.train_dataset.cameras[0:1]
    with torch.no_grad():
        expected = recon_model.get_outputs_for_camera(camera)["rgb"]
        got = edit_model.get_outputs_for_camera(camera)["rgb"]
    assert torch.allclose(expected, got, atol=1e-6)
    groups = edit_model.get_param_groups()
    assert set(groups) <= {"appearance", "colour_mlp"}
    group = {id(p) for params in groups.values() for p in params}
    for name, parameter in edit_model.named_parameters():
        if parameter.numel() == 0:  # nerfstudio's device indicator
            continue
        should_train = name.startswith(tuple("appearance." + prefix for prefix in trained))
        assert (id(parameter) in group) == should_train == parameter.requires_grad, name


def _render_rays(model, ray_bundle) -> torch.Tensor:
    with torch.no_grad():
        return model.get_outputs_for_camera_ray_bundle(ray_bundle.reshape((1, -1)))["rgb"].reshape(-1, 3)


def _keyframe_edit(recon, tmp_path):
    """The fast preset's edit pipeline loaded from the recon with its keyframes chosen (no diffusion model loaded),
    and the recon as ns-eval loads it."""
    from nerfstudio.utils.eval_utils import eval_setup

    from avatarstudio_ns.data.keyframes import avatar_keyframes

    capture, recon_config = recon
    config = copy.deepcopy(avatarstudio_edit_fast.config)
    config.pipeline.datamanager.data = capture
    config.pipeline.datamanager.render_resolution = 32
    config.pipeline.keyframes.n_time = 1
    config.load_dir = recon_config.get_base_dir() / "nerfstudio_models"
    quiet_config(config, tmp_path, 1)
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    pipeline = trainer.pipeline
    datamanager = pipeline.datamanager
    # The keyframes the guidance would choose, without loading a diffusion model.
    codes = pipeline.model.get_frame_embeddings()
    keyframes = avatar_keyframes(codes, datamanager.train_dataset, datamanager.eval_dataset, config.pipeline.keyframes)
    datamanager.set_keyframes(keyframes)
    _, recon_pipeline, _, _ = eval_setup(recon_config.get_base_dir() / "config.yml", test_mode="inference")
    return pipeline, keyframes, recon_pipeline.model


def test_the_edits_first_keyframe_render_is_the_recons_render_as_ns_eval_makes_it(recon, tmp_path):
    """Loading the recon into the edit must keep its sampling state (nerfstudio's load at step 0 reset the proposal
    weighting to uniform resampling, so the edit trained on other images than the recon renders)."""
    pipeline, keyframes, recon_model = _keyframe_edit(recon, tmp_path)
    datamanager = pipeline.datamanager
    pipeline.model.eval()  # no stratified jitter: the sampling state alone decides the render
    for _ in keyframes:
        ray_bundle, batch = datamanager.next_train(0)
        camera = datamanager.keyframe_camera(batch["keyframe_index"])
        with torch.no_grad():
            expected = recon_model.get_outputs_for_camera(camera)["rgb"].reshape(-1, 3)
        assert torch.allclose(_render_rays(pipeline.model, ray_bundle), expected, atol=1e-5)


def test_the_surfaces_the_region_is_fitted_on_are_rendered_as_ns_eval_renders(recon, tmp_path):
    """The region is fitted in the edit's setup, while the model trains, but on renders without sample jitter: with
    jitter it depended on the trainer's random draws (the blonde bob's white hair: region IoU 0.83 in the suite's
    edit, 0.92 fitted on the same keyframes without jitter)."""
    pipeline, _, recon_model = _keyframe_edit(recon, tmp_path)
    model = pipeline.model
    model.train()
    camera = pipeline.datamanager.keyframe_camera(0)
    surfaces = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        surfaces.append(model.canonical_surface(camera))
    for first, second in zip(*surfaces, strict=True):
        assert torch.equal(first, second)
    with torch.no_grad():
        expected = recon_model.get_outputs_for_camera(camera)["rgb"]
    assert torch.allclose(surfaces[0][2], expected, atol=1e-5)
    assert model.training


def test_edit_steps_render_keyframes_as_ns_eval_and_keep_their_samples(recon, tmp_path):
    """A training render of a keyframe is the evaluation render, on every visit, whether its samples were kept or
    not; only the colour is trained through it."""
    pipeline, keyframes, recon_model = _keyframe_edit(recon, tmp_path)
    datamanager, model = pipeline.datamanager, pipeline.model
    model.train()
    for budget in (1024.0, 0.0):
        model.config.keyframe_geometry_cache_mb = budget
        for _ in range(2 * len(keyframes)):
            ray_bundle, batch = datamanager.next_train(0)
            camera = datamanager.keyframe_camera(batch["keyframe_index"])
            with torch.no_grad():
                expected = recon_model.get_outputs_for_camera(camera)["rgb"].reshape(-1, 3)
            outputs = model.keyframe_outputs(ray_bundle, batch["keyframe_index"])
            assert torch.allclose(outputs["rgb"].detach(), expected, atol=1e-5)
        assert len(model._keyframe_geometry) == (len(keyframes) if budget else 0)
        model._keyframe_geometry.clear()
    outputs["rgb"].sum().backward()
    trained = {id(p) for group in model.get_param_groups().values() for p in group}
    for name, parameter in model.named_parameters():
        has_gradient = parameter.grad is not None and bool(parameter.grad.abs().sum() > 0)
        assert not has_gradient or id(parameter) in trained, name
    assert any(p.grad is not None for p in model.appearance.mlp_head.parameters())


def test_an_edit_reloaded_as_ns_eval_does_renders_what_it_trained_on(edited):
    from nerfstudio.utils.eval_utils import eval_setup

    config, trainer = edited
    _, reloaded, _, _ = eval_setup(config.get_base_dir() / "config.yml", test_mode="inference")
    model = trainer.pipeline.model
    model.eval()
    camera = trainer.pipeline.datamanager.keyframe_camera(0)
    ray_bundle = camera.generate_rays(camera_indices=0, keep_shape=False)
    assert torch.allclose(_render_rays(model, ray_bundle), _render_rays(reloaded.model, ray_bundle), atol=1e-5)


def test_edit_runs_its_own_steps_and_keeps_diffusion_weights_out(edited):
    config, _ = edited
    path = find_checkpoint(config.get_base_dir() / "nerfstudio_models")
    state = torch.load(path, weights_only=True)
    # Fresh optimisers: the edit counts its own iterations from 0 whatever step the recon ended at.
    assert state["step"] == EDIT_STEPS - 1
    assert set(state["optimizers"]) == {"appearance", "colour_mlp"}  # the default trains the colour grid and MLP
    assert not [k for k in state["pipeline"] if "unet" in k or "vae" in k or "text_encoder" in k]


def test_edit_reuses_the_personalisation_of_avatarstudio_personalize(edited):
    config, trainer = edited
    folder = config.pipeline.guidance.personalization_dir
    assert (folder / "personalization.json").exists()
    assert trainer.pipeline.personalization_reused is True
    guidance = trainer.pipeline.get_guidance()
    assert guidance.personalized is not None
    assert len(guidance.keyframe_prompts) == len(trainer.pipeline.datamanager.keyframe_image_indices)


def test_edited_checkpoint_renders_at_several_times_without_diffusion(edited, tmp_path):
    from nerfstudio.scripts.render import SpiralRender
    from nerfstudio.utils.eval_utils import eval_setup

    config, _ = edited
    _, pipeline, _, _ = eval_setup(config.get_base_dir() / "config.yml", test_mode="inference")
    assert not pipeline._guidance_holder, "loading an edited avatar must not load a diffusion model"
    camera = pipeline.datamanager.train_dataset.cameras[0:1]
    renders = []
    for time in (0.0, 1.0):
        camera.times = torch.tensor([[time]])
        renders.append(pipeline.model.get_outputs_for_camera(camera)["rgb"])
    assert renders[0].shape == (32, 32, 3)
    assert torch.isfinite(renders[0]).all()
    output = tmp_path / "spiral.mp4"
    SpiralRender(load_config=config.get_base_dir() / "config.yml", output_path=output, seconds=0.5, frame_rate=4).main()
    assert output.exists() and output.stat().st_size > 0


def test_the_viewer_finds_its_controls_without_loading_a_diffusion_model(edited, tmp_path):
    """nerfstudio's viewer reads every public attribute of the pipeline; none may load the diffusion model, even when
    the base model the edit was made with is gone."""
    import yaml
    from nerfstudio.utils.eval_utils import eval_setup
    from nerfstudio.viewer.utils import parse_object
    from nerfstudio.viewer.viewer_elements import ViewerElement

    config, _ = edited
    moved = yaml.load((config.get_base_dir() / "config.yml").read_text(), Loader=yaml.Loader)
    moved.pipeline.guidance.base_model = str(tmp_path / "missing-model")
    moved.load_dir = None
    (tmp_path / "config.yml").write_text(yaml.dump(moved))
    _, pipeline, _, _ = eval_setup(tmp_path / "config.yml", test_mode="inference")
    parse_object(pipeline, ViewerElement, "Custom Elements")
    assert not pipeline._guidance_holder, "reading the pipeline's attributes loaded the diffusion model"
    camera = pipeline.datamanager.train_dataset.cameras[0:1]
    outputs = pipeline.model.get_outputs_for_camera(camera)
    assert torch.isfinite(outputs["rgb"]).all() and "edit_region" in outputs


def test_an_edited_avatar_renders_the_recons_appearance_as_rgb_original(recon, edited):
    """The viewer's Output type and Split Screen compare rgb (the edit) with rgb_original (what the recon renders)."""
    from nerfstudio.utils.eval_utils import eval_setup

    config, _ = edited
    _, recon_config = recon
    _, pipeline, _, _ = eval_setup(config.get_base_dir() / "config.yml", test_mode="inference")
    _, original, _, _ = eval_setup(recon_config.get_base_dir() / "config.yml", test_mode="inference")
    camera = pipeline.datamanager.train_dataset.cameras[0:1]
    recon_rgb = original.model.get_outputs_for_camera(camera)["rgb"]
    edit = pipeline.model.get_outputs_for_camera(camera)
    assert torch.allclose(edit["rgb_original"], recon_rgb, atol=1e-5)
    assert not torch.allclose(edit["rgb"], recon_rgb, atol=1e-3), "the edit did not change the render"


def test_only_an_edit_with_the_same_trainable_parameters_is_resumed():
    from avatarstudio_ns.edit.trainer import _same_optimizer_groups

    def saved(*shapes):
        params = [torch.nn.Parameter(torch.zeros(shape)) for shape in shapes]
        optimizer = torch.optim.Adam(params)
        sum(p.sum() for p in params).backward()
        optimizer.step()
        return optimizer.state_dict(), params

    state, params = saved((4, 2), (3,))
    assert _same_optimizer_groups({"appearance": state}, {"appearance": params})
    assert not _same_optimizer_groups({"appearance": state}, {"appearance": params, "colour_mlp": params})
    assert not _same_optimizer_groups({"appearance": state}, {"appearance": params[:1]})
    _, other = saved((5, 2), (3,))
    assert not _same_optimizer_groups({"appearance": state}, {"appearance": other})


def test_the_identity_loss_compares_each_keyframe_render_with_its_capture(edited):
    import torch.nn.functional as F

    from avatarstudio_ns.data.keyframes import keyframe_images

    config, trainer = edited
    datamanager, model = trainer.pipeline.datamanager, trainer.pipeline.model
    ray_bundle, batch = datamanager.next_train(0)
    keyframe = datamanager.keyframes[batch["keyframe_index"]]
    captured = keyframe_images(datamanager.train_dataset, [keyframe])[0]
    height, width = batch["image_height"], batch["image_width"]
    expected = F.interpolate(captured[None], size=(height, width), mode="area")[0].permute(1, 2, 0).reshape(-1, 3)
    assert torch.allclose(batch["image"], expected)
    preset, outside, training = model.config.identity_loss_mult, model.config.identity_outside_region, model.training
    model.train()
    try:
        model.config.identity_outside_region = False  # everywhere first
        model.config.identity_loss_mult = 0.0
        assert "identity_loss" not in model.get_loss_dict(model(ray_bundle), batch)  # off unless weighted
        model.config.identity_loss_mult = 2.0
        outputs = model(ray_bundle)
        loss = model.get_loss_dict(outputs, batch)["identity_loss"]
        assert torch.allclose(loss, 2.0 * ((outputs["rgb"] - expected) ** 2).mean())
        loss.backward()
        # Only the edited appearance receives the identity's gradient; the geometry stays the recon's.
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.appearance.mlp_head.parameters())
        assert all(p.grad is None for p in model.appearance.mlp_base.parameters())
        # Held to the capture only outside the edit region (the default): the rendered region weights each pixel.
        model.config.identity_outside_region = True
        loss = model.get_loss_dict(outputs, batch)["identity_loss"]
        outside = 1.0 - outputs["edit_region"].detach()
        assert torch.allclose(loss, 2.0 * (outside * (outputs["rgb"] - expected) ** 2).mean())
    finally:
        model.config.identity_outside_region = outside
        model.config.identity_loss_mult = preset
        model.train(training)
        model.zero_grad(set_to_none=True)


class _RegionFitted(Exception):
    """Stops the guidance's setup once the region's cameras are known."""


def test_the_region_is_fitted_on_the_first_frames_keyframes_and_the_edit_keeps_them_all(
    recon, tiny_model, tmp_path, monkeypatch
):
    """The region is found on the first frame's cameras only (the frontal camera's time keyframes would weigh one
    view several times over); every keyframe is still the edit's."""
    from avatarstudio_ns.edit import pipeline as edit_pipeline

    capture, recon_config = recon
    config = tiny_edit_config(capture, tiny_model, tmp_path / "personal")
    config.load_dir = recon_config.get_base_dir() / "nerfstudio_models"
    quiet_config(config, tmp_path / "edit", 1)
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    fitted = []

    def record(model, cameras, base, prompt, region_config):
        fitted.append([float(c.times.reshape(-1)[0]) for c in cameras])
        raise _RegionFitted

    monkeypatch.setattr(edit_pipeline, "fit_edit_region", record)
    for first_frame_only in (True, False):
        trainer.pipeline.config.region.first_frame_only = first_frame_only
        with pytest.raises(_RegionFitted):
            trainer.pipeline.get_guidance()
    keyframes = trainer.pipeline.datamanager.keyframes
    first = [k for k in keyframes if k.timestep_index == keyframes[0].timestep_index]
    assert 1 < len(first) < len(keyframes), "the capture gives first-frame and time keyframes"
    assert fitted[0] == pytest.approx([k.time for k in first])
    assert sorted(fitted[1]) == pytest.approx(sorted(k.time for k in keyframes))


@pytest.mark.parametrize("consistent", [True, False])
def test_a_consistent_change_is_the_same_at_every_view_and_moment(recon, consistent):
    """With ``consistent_change`` the edit moves each canonical point's colour by one amount whatever the view
    direction and frame code; without it the edited colour MLP sees both, and the change differs between them."""
    pipeline, model = _edit_model_from_recon(recon, consistent_change=consistent)
    recon_model = pipeline.model
    model.load_state_dict(recon_model.state_dict())
    model.eval()
    generator = torch.Generator().manual_seed(0)
    box = model.scene_box.aabb
    canonical = box[0] + (box[1] - box[0]) * (0.3 + 0.4 * torch.rand(50, 4, 3, generator=generator))
    code_dim = model.appearance.code_dim

    def change(directions, codes):
        with torch.no_grad():
            _, geo_features = model.appearance.get_canonical_density(canonical)
            outputs = model.sample_colours(canonical, geo_features, directions, codes)
        rgb = outputs["rgb"]
        # Where the edited colour is clamped to [0, 1] it cannot move by the whole change.
        return torch.where((rgb > 1e-4) & (rgb < 1 - 1e-4), rgb - outputs["rgb_original"], torch.nan)

    def draw():
        directions = torch.nn.functional.normalize(torch.randn(50, 4, 3, generator=generator), dim=-1)
        return directions, torch.randn(50, 1, code_dim, generator=generator)

    first, second = draw(), draw()
    assert change(*first).nan_to_num().abs().max() < 1e-6  # before any step the edit is the recon
    with torch.no_grad():  # an edit: the colour MLP moved
        for parameter in model.appearance.mlp_head.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    assert change(*first).nan_to_num().abs().max() > 1e-3
    difference = (change(*first) - change(*second)).nan_to_num().abs().max()
    assert (difference < 1e-6) if consistent else (difference > 1e-3)


def test_the_edit_checks_its_prompt_against_its_base_models_words(edited):
    config, _ = edited
    assert EDIT_PROMPT_CHECKS == [
        (str(Path(config.pipeline.guidance.base_model).resolve()), "photo of a person with blue hair")
    ]
    assert config.pipeline.model.prompt == "photo of a person with blue hair"
