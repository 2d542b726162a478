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


def augment(xs: dict[str, Tensor], generator: torch.Generator, joint: bool,
            geometric: frozenset[str] | None = None) -> dict[str, Tensor]:
    """Flip/rotate each modality's batch; ``joint`` gives every modality of a sample the same draw.
    Only the modalities in ``geometric`` (default: all) change: the rule means nothing for a vector, a
    spectrogram's frequency and time axes or a sequence. The others still consume their draws, so which
    modalities are images never shifts the random stream of the rest."""
    keep = (lambda m: True) if geometric is None else geometric.__contains__
    if joint:
        n = next(iter(xs.values())).shape[0]
        u = _draws(n, generator)
        return {m: _apply(x, u) if keep(m) else x for m, x in xs.items()}
    out = {}
    for m, x in xs.items():
        u = _draws(x.shape[0], generator)
        out[m] = _apply(x, u) if keep(m) else x
    return out


def strong_augment(xs: dict[str, Tensor], generator: torch.Generator,
                   geometric: frozenset[str] | None = None) -> dict[str, Tensor]:
    """A channel-agnostic strong view (MLKD's second view), the same geometry for every modality.

    The weak flip/rotation rule (one draw per sample, shared by the modalities so that a teacher's
    view matches its student's), then per sample: contrast scaled by U(0.6, 1.4) around the mean,
    brightness shifted by N(0, 0.2) standard deviations, Gaussian noise of 0.1 standard deviations,
    and a zero-filled square cutout of side U(0, 0.5) x the image side. Unlike PIL-based
    RandAugment it works on any channel count (depth, SAR, 13-band MS, thermal). A modality not in
    ``geometric`` (default: all) is passed as it is: no photometric rule is defined for it here.
    """
    first = next(iter(xs.values()))
    n = first.shape[0]
    u = _draws(n, generator)
    contrast = 0.6 + 0.8 * torch.rand(n, 1, 1, 1, generator=generator)
    bright = 0.2 * torch.randn(n, 1, 1, 1, generator=generator)
    cut = torch.rand(n, 3, generator=generator)
    out = {}
    for m, x in xs.items():
        if geometric is not None and m not in geometric:
            out[m] = x
            continue
        dev = x.device
        v = _apply(x, u)
        mean = v.mean(dim=(1, 2, 3), keepdim=True)
        std = v.std(dim=(1, 2, 3), keepdim=True) + 1e-6
        v = (v - mean) * contrast.to(dev) + mean + bright.to(dev) * std
        v = v + torch.randn(v.shape, generator=generator).to(dev) * 0.1 * std
        h, w = v.shape[-2:]
        side = (cut[:, 0] * 0.5 * min(h, w)).long()
        cy, cx = (cut[:, 1] * h).long(), (cut[:, 2] * w).long()
        yy = torch.arange(h)[None, :, None]
        xx = torch.arange(w)[None, None, :]
        half = (side // 2)[:, None, None]
        hole = ((yy - cy[:, None, None]).abs() <= half) & ((xx - cx[:, None, None]).abs() <= half) \
            & (side[:, None, None] > 0)
        out[m] = v * (~hole[:, None]).to(dev, v.dtype)
    return out
