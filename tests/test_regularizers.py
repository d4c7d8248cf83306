"""The opacity entropy regulariser (Eq. 9)."""

from __future__ import annotations

import pytest
import torch

from avatarstudio_ns.recon.regularizers import opacity_entropy


def test_entropy_values():
    assert opacity_entropy(torch.tensor([[0.0], [1.0]])).item() == pytest.approx(0.0, abs=1e-3)
    assert opacity_entropy(torch.tensor([[0.5]])).item() == pytest.approx(1.0)
    assert opacity_entropy(torch.tensor([[0.25]])).item() == pytest.approx(0.811278, abs=1e-5)
    omega = torch.tensor([[0.0], [0.3], [1.0]], requires_grad=True)
    opacity_entropy(omega).backward()
    assert torch.isfinite(omega.grad).all()
    assert omega.grad[1] > 0  # below 0.5, gradient descent pushes omega toward 0 (empty), not toward fog
