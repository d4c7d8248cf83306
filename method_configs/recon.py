"""``avatarstudio-recon`` and ``avatarstudio-recon-cpu``: the dynamic head NeRF, registered through pyproject."""

from __future__ import annotations

from nerfstudio.configs.base_config import MachineConfig, ViewerConfig
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig
from nerfstudio.plugins.types import MethodSpecification

from avatarstudio_ns.data.dataparser import AvatarStudioDataParserConfig
from avatarstudio_ns.data.dataset import AvatarDataset
from avatarstudio_ns.recon.model import AvatarReconModelConfig
from avatarstudio_ns.recon.schedulers import FloatExponentialDecaySchedulerConfig
from avatarstudio_ns.recon.trainer import AvatarTrainerConfig


def recon_optimizers(max_steps: int, lr: float = 1e-2, lr_final: float = 1e-4) -> dict:
    """One Adam + exponential decay per parameter group of the recon model.

    The frame codes and the deformation learn more slowly than the grids: they are shared by many
    rays and a large early step would scramble the motion while the geometry is still blurry.
    """

    def group(group_lr: float) -> dict:
        return {
            "optimizer": AdamOptimizerConfig(lr=group_lr, eps=1e-15),
            "scheduler": FloatExponentialDecaySchedulerConfig(lr_final=group_lr * lr_final / lr, max_steps=max_steps),
        }

    return {
        "appearance": group(lr),
        "proposal_networks": group(lr),
        "deformation": group(lr * 0.5),
        "frame_codes": group(lr * 0.5),
    }


def _datamanager(num_rays: int) -> VanillaDataManagerConfig:
    return VanillaDataManagerConfig(
        _target=VanillaDataManager[AvatarDataset],
        dataparser=AvatarStudioDataParserConfig(),
        train_num_rays_per_batch=num_rays,
        eval_num_rays_per_batch=num_rays,
    )


RECON_STEPS = 30000
CPU_STEPS = 2500

avatarstudio_recon = MethodSpecification(
    config=AvatarTrainerConfig(
        method_name="avatarstudio-recon",
        steps_per_eval_batch=500,
        steps_per_eval_image=1000,
        steps_per_eval_all_images=RECON_STEPS,
        steps_per_save=2000,
        max_num_iterations=RECON_STEPS,
        mixed_precision=True,
        pipeline=VanillaPipelineConfig(
            datamanager=_datamanager(4096),
            model=AvatarReconModelConfig(eval_num_rays_per_chunk=1 << 15, max_res=1024),
        ),
        optimizers=recon_optimizers(RECON_STEPS),
        viewer=ViewerConfig(num_rays_per_chunk=1 << 15),
        vis="viewer",
    ),
    description=(
        "AvatarStudio dynamic head NeRF (deformation + canonical appearance), tuned for a 24-camera 256 px rig "
        "on a GPU: 4096 rays, 30k steps."
    ),
)

avatarstudio_recon_cpu = MethodSpecification(
    config=AvatarTrainerConfig(
        method_name="avatarstudio-recon-cpu",
        steps_per_eval_batch=250,
        steps_per_eval_image=1000,
        steps_per_eval_all_images=100000,
        steps_per_save=1000,
        max_num_iterations=CPU_STEPS,
        mixed_precision=False,
        machine=MachineConfig(device_type="cpu"),
        pipeline=VanillaPipelineConfig(
            datamanager=_datamanager(1024),
            model=AvatarReconModelConfig(
                eval_num_rays_per_chunk=4096,
                implementation="torch",
                num_cpu_threads=2,
                num_levels=8,
                max_res=256,
                log2_hashmap_size=16,
                deformation_grid_resolutions=(8, 16, 32),
                num_proposal_samples_per_ray=(48, 24),
                num_nerf_samples_per_ray=24,
                proposal_warmup=1000,
                proposal_weights_anneal_max_num_iters=500,
                proposal_net_args_list=[
                    {"hidden_dim": 16, "log2_hashmap_size": 14, "num_levels": 4, "max_res": 64, "use_linear": False},
                    {"hidden_dim": 16, "log2_hashmap_size": 15, "num_levels": 4, "max_res": 128, "use_linear": False},
                ],
            ),
        ),
        optimizers=recon_optimizers(CPU_STEPS),
        viewer=ViewerConfig(num_rays_per_chunk=4096, quit_on_train_completion=True),
        vis="tensorboard",
    ),
    description=(
        "AvatarStudio dynamic head NeRF, CPU preset for small captures (e.g. 8 cameras, 64 px): 1024 rays, "
        f"{CPU_STEPS} steps, small torch hash grid; logs to tensorboard (add --vis viewer for the viewer)."
    ),
)
