"""What one modality's samples are: the one definition of the modality kinds.

A modality's array is N x (one sample's shape). Its *kind* says what that sample is, and so which encoder
reads it and which augmentation means something for it:

=============  =====================  ==========================================  ======================
kind           one sample             encoder (the registry's default)            geometric augmentation
=============  =====================  ==========================================  ======================
image          C x H x W              a CNN (resnet18)                            flips and 90-degree turns
spectrogram    C x F x T              a CNN (resnet18)                            none: its axes are
                                                                                  frequency and time
vector         D                      an MLP (mlp)                                none
sequence       T x C x H x W frames,  the frame's encoder on every step, then     none
               or T x D steps         the mean over time (:mod:`cmkd.archs.sequence`)
=============  =====================  ==========================================  ======================

The kind follows from the array's rank (2: vector, 3 or 5: sequence, 4: image) unless the data set declares
it (a 4-D spectrogram). Images of different sizes per modality are fine: a kind is per modality.
"""

from __future__ import annotations

from dataclasses import dataclass

from cmkd.errors import UserError

KINDS = ("image", "spectrogram", "vector", "sequence")
#: the ranks (of the whole N x ... array) each kind can have
RANKS = {"image": (4,), "spectrogram": (4,), "vector": (2,), "sequence": (3, 5)}
_BY_RANK = {2: "vector", 3: "sequence", 4: "image", 5: "sequence"}


def infer_kind(ndim: int) -> str | None:
    """The kind an array of rank ``ndim`` has when the data set declares none (None: no kind has that rank)."""
    return _BY_RANK.get(ndim)


def check_kind(dataset: str, modality: str, kind: str, shape: tuple[int, ...]) -> None:
    """Refuse, in one line, a kind that is unknown or that the array's shape cannot have."""
    if kind not in KINDS:
        raise UserError(f"data set {dataset!r}, modality {modality!r}: kind {kind!r} is not one of {', '.join(KINDS)}")
    if len(shape) not in RANKS[kind]:
        forms = {"image": "N x C x H x W", "spectrogram": "N x C x F x T", "vector": "N x D",
                 "sequence": "N x T x C x H x W or N x T x D"}
        raise UserError(f"data set {dataset!r}, modality {modality!r}: a {kind} is {forms[kind]}, got shape "
                        f"{tuple(shape)}")


@dataclass(frozen=True)
class SampleShape:
    """One sample of a modality: its kind and its shape (without the N axis)."""

    kind: str
    shape: tuple[int, ...]

    @property
    def frame(self) -> tuple[int, ...]:
        """What one encoder call reads: the sample itself, or one step of a sequence."""
        return self.shape[1:] if self.kind == "sequence" else self.shape

    @property
    def channels(self) -> int:
        """C of an image (or of a sequence's frames), D of a vector (or of a sequence's steps)."""
        return int(self.frame[0])

    @property
    def image_size(self) -> tuple[int, int] | None:
        """H x W where the encoder reads images (an image, a spectrogram, a sequence's frames), else None."""
        return (int(self.frame[1]), int(self.frame[2])) if len(self.frame) == 3 else None

    @property
    def steps(self) -> int | None:
        """T of a sequence, else None."""
        return int(self.shape[0]) if self.kind == "sequence" else None

    @property
    def geometric(self) -> bool:
        """Whether the flip/rotation rule means something for it: for images only."""
        return self.kind == "image"

    def describe(self) -> str:
        """``image 3x16x16`` / ``sequence 8x3x32x32``: how listings and errors name it."""
        return f"{self.kind} {'x'.join(map(str, self.shape))}"
