"""Record driver: the edit's identity loss held to the avatar's own renders of the keyframes instead of the captured
keyframes, on chosen suite edits; not an option of the package (yet).

The identity score compares the edit with the unedited avatar's renders, and the user asks to keep the avatar as it
is outside the prompt's target; the loss today pulls each keyframe render toward the captured image, which the recon
matched only to about 32 dB, so it also keeps fitting the capture outside the region. Here the datamanager's
keyframe images are replaced, once the edit has set its keyframes and before its first step, by the loaded avatar's
renders of them. Runs are fresh (a resumed run would render the edited avatar). Everything else is `avatarstudio
suite` unchanged, so the runs' recorded settings digest is VT-SDS's: keep their folder apart from the suite's.

    python identity_target.py --output outputs/identity_target --identities blue-long-tan --prompts prompts.yaml \
        --checkpoint-every 300
"""

import torch
import tyro

from avatarstudio_ns.edit.pipeline import AvatarEditPipeline
from avatarstudio_ns.scripts.suite import SuiteCommand

_setup_guidance = AvatarEditPipeline._setup_guidance


@torch.no_grad()
def _setup_guidance_holding_the_avatar(self):
    guidance = _setup_guidance(self)
    datamanager, training = self.datamanager, self.model.training
    self.model.eval()
    for index in range(len(datamanager.keyframes)):
        rgb = self.model.get_outputs_for_camera(datamanager.keyframe_camera(index))["rgb"]
        datamanager._captured[index] = rgb.reshape(-1, 3).to(datamanager.device)
    self.model.train(training)
    return guidance


AvatarEditPipeline._setup_guidance = _setup_guidance_holding_the_avatar

if __name__ == "__main__":
    tyro.cli(SuiteCommand).main()
