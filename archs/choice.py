"""Which network a role uses: one architecture for every modality (``resnet34``), or one per modality
(``rgb=resnet34,depth=mobilenet_v2``; a bare name among them is the default of the modalities not named).
The canonical text (default first, then modalities sorted) is what a trial spec stores and hashes."""

from __future__ import annotations

from dataclasses import dataclass

from cmkd.errors import UserError

from .registry import DEFAULT_ARCH, get_arch


@dataclass(frozen=True)
class ArchChoice:
    default: str = DEFAULT_ARCH
    per_modality: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: "str | ArchChoice | None", what: str = "--arch") -> "ArchChoice":
        if isinstance(text, ArchChoice):
            return text
        if text is None or text == "":
            return cls()
        if not isinstance(text, str):
            raise UserError(f"{what} takes NAME or MODALITY=NAME, got {text!r}")
        default, named = None, {}
        for part in (p.strip() for p in text.split(",")):
            modality, eq, name = part.partition("=") if "=" in part else ("", "", part)
            if not name:
                raise UserError(f"{what} {text!r}: an empty architecture name; pass NAME or MODALITY=NAME")
            get_arch(name)  # unknown names fail here, with a did-you-mean
            if eq:
                if modality in named:
                    raise UserError(f"{what} names modality {modality!r} twice; pass MODALITY=NAME once per modality")
                named[modality] = name
            elif default is not None:
                raise UserError(f"{what} {text!r} names two default architectures ({default}, {name}); "
                                "give one, or MODALITY=NAME for each modality")
            else:
                default = name
        return cls(default or DEFAULT_ARCH, tuple(sorted((m, n) for m, n in named.items() if n != (default or DEFAULT_ARCH))))

    @classmethod
    def join(cls, parts: list[str], what: str = "--arch") -> "ArchChoice":
        """The repeatable flag's values (``--arch rgb=resnet34 --arch depth=mobilenet_v2``) as one choice."""
        return cls.parse(",".join(parts), what)

    def for_modality(self, modality: str) -> str:
        return dict(self.per_modality).get(modality, self.default)

    def names(self) -> list[str]:
        return list(dict.fromkeys([self.default, *(n for _, n in self.per_modality)]))

    def check_modalities(self, modalities, what: str = "--arch") -> None:
        unknown = [m for m, _ in self.per_modality if m not in modalities]
        if unknown:
            raise UserError(f"{what} names modality {unknown[0]!r}, which the data set lacks; its modalities: "
                            f"{', '.join(modalities)}")

    def __str__(self) -> str:
        return ",".join([self.default, *(f"{m}={n}" for m, n in self.per_modality)])

    @property
    def is_default(self) -> bool:
        return self.default == DEFAULT_ARCH and not self.per_modality
