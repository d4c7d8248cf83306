"""Learning-rate schedules whose saved state holds plain Python floats.

nerfstudio's ExponentialDecayScheduler computes its factor with numpy, so the LambdaLR state in a
checkpoint holds numpy scalars, which torch >= 2.6's weights-only loader rejects unless they are
allow-listed. This schedule is the same curve computed with ``math``, which removes the problem at
its source.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig, Scheduler
from torch.optim import Optimizer, lr_scheduler


@dataclass
class FloatExponentialDecaySchedulerConfig(ExponentialDecaySchedulerConfig):
    """Exponential decay with warmup (nerfstudio's curve), returning Python floats."""

    _target: type = field(default_factory=lambda: FloatExponentialDecayScheduler)
    """target class to instantiate"""


class FloatExponentialDecayScheduler(Scheduler):
    """Ramps up to ``lr_init`` over ``warmup_steps``, then decays exponentially to ``lr_final`` at ``max_steps``."""

    config: FloatExponentialDecaySchedulerConfig

    def get_scheduler(self, optimizer: Optimizer, lr_init: float) -> lr_scheduler.LRScheduler:
        lr_final = float(lr_init if self.config.lr_final is None else self.config.lr_final)
        lr_init = float(lr_init)
        cfg = self.config

        def factor(step: int) -> float:
            if step < cfg.warmup_steps:
                progress = min(max(step / cfg.warmup_steps, 0.0), 1.0)
                ramp = math.sin(0.5 * math.pi * progress) if cfg.ramp == "cosine" else progress
                lr = cfg.lr_pre_warmup + (lr_init - cfg.lr_pre_warmup) * ramp
            else:
                span = max(cfg.max_steps - cfg.warmup_steps, 1)
                t = min(max((step - cfg.warmup_steps) / span, 0.0), 1.0)
                lr = math.exp(math.log(lr_init) * (1.0 - t) + math.log(lr_final) * t)
            # LambdaLR multiplies the initial learning rate by this factor.
            return float(lr / lr_init)

        return lr_scheduler.LambdaLR(optimizer, lr_lambda=factor)
