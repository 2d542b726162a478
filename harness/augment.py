"""Online augmentation on batch tensors (the official ``functions.py`` rule, batched).

Per sample: with probability 0.5 left as is; otherwise a horizontal flip (p 0.5), a vertical
flip (p 0.5), then with probability 0.5 a rotation by k * 90 degrees, k uniform in {0, 1, 2, 3}
(k in {0, 2} for non-square images, where 90 degrees would change the shape). Random draws come
from an explicit generator so that an epoch replays identically after a resume.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _draws(n: int, generator: torch.Generator) -> Tensor:
    return torch.rand(n, 4, generator=generator)


def _apply(x: Tensor, u: Tensor) -> Tensor:
    u = u.to(x.device)
    active = u[:, 0] >= 0.5
    hflip = active & (u[:, 1] < 0.5)
    vflip = active & (u[:, 2] < 0.5)
    square = x.shape[-1] == x.shape[-2]
    # rotation: p 0.5 of rotating, then k uniform in {0..3}; u[:, 3] carries both draws
    rotate = active & (u[:, 3] < 0.5)
    k = torch.clamp((u[:, 3] * 8).long(), max=3)  # u < 0.5 -> k in {0,1,2,3} uniform
    if not square:
        k = torch.where(k % 2 == 1, k - 1, k)
    out = torch.where(hflip[:, None, None, None], x.flip(-1), x)
    out = torch.where(vflip[:, None, None, None], out.flip(-2), out)
    for kk in (1, 2, 3):
        sel = rotate & (k == kk)
        if bool(sel.any()):
            out[sel] = torch.rot90(out[sel], kk, dims=(-2, -1))
    return out


def augment(xs: dict[str, Tensor], generator: torch.Generator, joint: bool) -> dict[str, Tensor]:
    """Flip/rotate each modality's batch; ``joint`` gives every modality of a sample the same draw."""
    if joint:
        n = next(iter(xs.values())).shape[0]
        u = _draws(n, generator)
        return {m: _apply(x, u) for m, x in xs.items()}
    return {m: _apply(x, _draws(x.shape[0], generator)) for m, x in xs.items()}


def strong_augment(x: Tensor, generator: torch.Generator) -> Tensor:
    """A channel-agnostic strong view (for MLKD): the weak rule, then per-sample random contrast and
    brightness scaling, additive Gaussian noise, and a random square cutout (zero-filled).

    Works on any channel count (depth, SAR, 13-band MS), unlike PIL-based RandAugment.
    """
    n = x.shape[0]
    dev = x.device
    out = _apply(x, _draws(n, generator))
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    contrast = (0.6 + 0.8 * torch.rand(n, 1, 1, 1, generator=generator)).to(dev)
    std = out.std(dim=(1, 2, 3), keepdim=True) + 1e-6
    bright = (0.2 * torch.randn(n, 1, 1, 1, generator=generator)).to(dev) * std
    out = (out - mean) * contrast + mean + bright
    noise = torch.randn(out.shape, generator=generator).to(dev) * 0.1 * std
    out = out + noise
    h, w = out.shape[-2:]
    side = (torch.rand(n, generator=generator) * 0.5 * min(h, w)).long()
    cy = (torch.rand(n, generator=generator) * h).long()
    cx = (torch.rand(n, generator=generator) * w).long()
    yy = torch.arange(h)[None, :, None]
    xx = torch.arange(w)[None, None, :]
    half = (side // 2)[:, None, None]
    hole = ((yy - cy[:, None, None]).abs() <= half) & ((xx - cx[:, None, None]).abs() <= half) & (side[:, None, None] > 0)
    return out * (~hole[:, None]).to(dev, out.dtype)
