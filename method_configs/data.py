"""The ``avatarstudio-data`` dataparser, registered with nerfstudio through pyproject's entry points."""

from __future__ import annotations

from nerfstudio.plugins.registry_dataparser import DataParserSpecification

from avatarstudio_ns.data.dataparser import AvatarStudioDataParserConfig

avatarstudio_data = DataParserSpecification(
    config=AvatarStudioDataParserConfig(),
    description="Multi-view head video: VHAP / GaussianAvatars export or D-NeRF style JSON (see docs/data_format.md).",
)
