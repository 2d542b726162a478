"""Registry of data-set adapters: one decorator, one file per data set."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from cmkd.errors import UserError, check_value
from cmkd.registry import Registry

from .base import MultiModalData

#: adapters by name; ``@register_dataset(name)`` makes one available to the CLI and the sweep
DATASETS: Registry[type["DatasetAdapter"]] = Registry("data set")
register_dataset = DATASETS.register


class DatasetAdapter(ABC):
    """Turns one source into :class:`MultiModalData`.

    ``options`` are adapter-specific keyword arguments (from the CLI ``--data-opt k=v`` or a TOML
    config); ``root`` is where the data live (None for generated data).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: modality name -> channel count, as published.
    modalities: ClassVar[dict[str, int]] = {}
    rich: ClassVar[str] = ""
    class_names: ClassVar[list[str]] = []
    #: default adapter options, also the list of accepted option names.
    default_options: ClassVar[dict[str, Any]] = {}
    #: the column label in the tables ("" = the registered name)
    label: ClassVar[str] = ""
    #: the data set's column position in the paper's tables (None: not in the paper; its columns follow)
    paper_column: ClassVar[int | None] = None
    #: where the data set's own published split comes from, or why it has none (the refusal's hint)
    published_split_note: ClassVar[str] = ""
    #: the published number of samples and image side (before the ``image_size`` option): what
    #: ``cmkd bench --dry-run`` plans with when the data are not on disk (None: unknown, the data are needed)
    declared_samples: ClassVar[int | None] = None
    declared_image_size: ClassVar[int | None] = None
    #: per modality, one sample's published shape, where the modalities are not all square images of
    #: ``declared_image_size`` (vectors, sequences, unequal sizes); with ``declared_samples``, what a dry run plans with
    declared_sample_shapes: ClassVar[dict[str, tuple[int, ...]]] = {}
    #: the kinds the data set declares where its ranks do not say them (a 4-D spectrogram: ``cmkd.datasets.kinds``)
    kinds: ClassVar[dict[str, str]] = {}
    #: channel names per modality, in array order (a model's sidecar lists them for its users)
    channel_names: ClassVar[dict[str, list[str]]] = {}

    def __init__(self, root: str | None = None, **options: Any) -> None:
        bad = sorted(set(options) - set(self.default_options))
        if bad:
            raise UserError(
                f"data set {self.name!r} has no option {bad[0]!r}; valid options: "
                f"{', '.join(sorted(self.default_options)) or '(none)'}"
            )
        for key, value in options.items():
            default = self.default_options[key]
            if default is not None and type(default) in (int, float, bool, str):
                check_value(f"data-set option {key}", value, type(default))
        self.root = root
        #: the options the user gave (a prepared cache or official arrays are checked against these)
        self.given = dict(options)
        self.options = {**self.default_options, **options}

    def modality_channels(self) -> dict[str, int]:
        """Channels per modality for these options (an adapter may add modalities by option)."""
        return dict(self.modalities)

    def found(self) -> bool:
        """Whether the data can be loaded without error (no compute)."""
        return True

    def declared_shape(self) -> tuple[int, dict[str, tuple[int, ...]]] | None:
        """(samples, one sample's shape per modality) as published, with these options; None when not declared."""
        if self.declared_samples is None:
            return None
        if self.declared_sample_shapes:
            return self.declared_samples, dict(self.declared_sample_shapes)
        side = int(self.options.get("image_size") or 0) or self.declared_image_size
        if not side:
            return None
        return self.declared_samples, {m: (c, side, side) for m, c in self.modality_channels().items()}

    def check(self) -> None:
        """Raise :class:`UserError` naming what is missing, before any compute starts."""

    @abstractmethod
    def load(self) -> MultiModalData:
        """Read (or generate) the data."""


def get_dataset(name: str, root: str | None = None, **options: Any) -> DatasetAdapter:
    return DATASETS.lookup(name)(root=root, **options)
