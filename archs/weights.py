"""Pretrained weights, from local files only: a torchvision or timm state dict loaded into an encoder.

Nothing is ever downloaded. A weights source is a path to a state dict (``torch.load(weights_only=True)``:
tensors only, never an arbitrary pickle), or ``hub`` for the architecture's torchvision ``DEFAULT`` weights
already in the torch hub cache (``$TORCH_HOME/hub/checkpoints``). The file's content hash (not its path)
joins the trial's identity.

The classifier's keys are dropped (the encoder has none). For C != 3 input channels the stem's RGB kernels
are adapted by timm's rule (``adapt_input_conv``): C = 1 sums them over the three input channels; otherwise
they are repeated over the C channels and scaled by 3 / C, so that a C-channel input of the same intensity
gives the first layer the same activation as an RGB one.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from cmkd.errors import UserError

HUB = "hub"


def resolve(source: str, arch: str) -> Path:
    """The local file of a weights source (a path, or ``hub``), refused in one line when absent."""
    if source == HUB:
        from torchvision.models import get_model_weights

        try:
            url = get_model_weights(arch).DEFAULT.url
        except (ValueError, KeyError, AttributeError):
            raise UserError(f"--pretrained hub: torchvision publishes no weights for architecture {arch!r}; pass "
                            "the path of a state-dict file") from None
        path = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[1]
        if not path.is_file():
            raise UserError(f"--pretrained hub: no {arch} weights in the torch hub cache (looked for {path}); put "
                            "the file there or pass its path (cmkd never downloads)")
        return path
    path = Path(source).expanduser()
    if not path.is_file():
        raise UserError(f"pretrained weights file {path} does not exist; the file must be there (cmkd never "
                        "downloads weights)")
    return path.resolve()


def content_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def read_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file, or one that holds more than tensors
        raise UserError(f"{path} is not a state dict of tensors ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:120]}); save one with torch.save(model.state_dict(), path)") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):  # a training checkpoint around it
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path} is not a state dict of tensors; save one with torch.save(model.state_dict(), path)")
    return state


def load_into(encoder: nn.Module, state: dict[str, torch.Tensor], arch: str, path: Path) -> None:
    """Load ``state`` into ``encoder`` (see :func:`fitted_state`)."""
    encoder.load_state_dict(fitted_state(encoder, state, arch, path))


def fitted_state(encoder: nn.Module, state: dict[str, torch.Tensor], arch: str, path: Path) -> dict[str, torch.Tensor]:
    """``state`` made for ``encoder``: keys it lacks (the classifier's) dropped, the stem adapted to the
    encoder's channels. Refuses a file for another architecture (naming the first missing key) or channels.
    The encoder may live on the meta device (only its shapes are read)."""
    from timm.models import adapt_input_conv

    own = encoder.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise UserError(f"{path} is not a {arch} state dict: it lacks {missing[0]!r} (and {len(missing) - 1} more); "
                        f"pass weights saved from a {arch}")
    state = {k: state[k] for k in own}
    stem = f"{encoder.stem_path}.weight" if getattr(encoder, "stem_path", None) else None
    if stem and state[stem].shape != own[stem].shape and state[stem].shape[0] == own[stem].shape[0]:
        have, want = state[stem].shape[1], own[stem].shape[1]
        if have != 3:
            raise UserError(f"{path} holds a stem for {have} input channel(s); this modality has {want}: pass "
                            "weights made for RGB (3 channels: adapted) or for this channel count")
        state[stem] = adapt_input_conv(want, state[stem])
    bad = [k for k in own if state[k].shape != own[k].shape]
    if bad:
        raise UserError(f"{path} does not fit this {arch}: {bad[0]!r} is {tuple(state[bad[0]].shape)} in the file, "
                        f"{tuple(own[bad[0]].shape)} here (another width?)")
    return state
