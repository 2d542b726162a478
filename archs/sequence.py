"""The default encoder of a sequence modality (N x T x C x H x W frames, N x T x D steps): the frame's
encoder applied to every step, then the mean over time. Simple on purpose: no recurrence, no attention, the
same pooled width as the frame encoder, and every registered architecture usable per frame. Its stages are
none (a frame's maps are per step, not per sample): feature methods that distil maps refuse a sequence."""

from __future__ import annotations

from torch import Tensor, nn

from .base import describe_encoder


class TemporalMean(nn.Module):
    """``frame`` on each of the T steps (as one batch of B*T), pooled features averaged over T."""

    def __init__(self, frame: nn.Module) -> None:
        super().__init__()
        self.frame = frame
        stem = getattr(frame, "stem_path", None)
        describe_encoder(self, frame.feature_dim, {}, f"frame.{stem}" if stem else None)

    def forward(self, x: Tensor) -> Tensor:
        b, t = x.shape[:2]
        return self.frame(x.reshape(b * t, *x.shape[2:])).reshape(b, t, -1).mean(dim=1)
