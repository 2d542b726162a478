"""``cmkd archs``: every registered architecture with its pooled width, stages, parameters and FLOPs for
a channel count and image size (counted on the meta device: nothing is computed)."""

from __future__ import annotations

import argparse
import sys

from cmkd.errors import UserError


def arch_rows(channels: int, size: int, width: int, names: list[str]) -> tuple[list[list], list[str]]:
    """One row per architecture; an architecture that refuses this input gets its one-line reason instead."""
    from cmkd.archs import get_arch, stage_shapes
    from cmkd.archs.cost import count

    rows, refused = [], []
    for name in names:
        cls = get_arch(name)
        image = None if cls.input_kind == "vector" else (size, size)
        try:
            cls.check(channels, image, width if cls.takes_width else 64)
        except UserError as exc:
            refused.append(f"{name}: {exc}")
            continue
        shape = (channels,) if image is None else (channels, size, size)
        counted = count(lambda: cls.build(channels, image, width if cls.takes_width else 64), shape)
        stages = cls.stages(width if cls.takes_width else 64)
        stage_text = " ".join(f"{k}:{s.channels}/{s.stride}" for k, s in stages.items()) or "pool only"
        dim = stage_shapes(lambda: cls.build(channels, image, width if cls.takes_width else 64), channels, image,
                           ("pool",))["pool"][0]
        rows.append([name, cls.family, cls.input_kind, dim, stage_text, f"{counted.params / 1e6:.2f}",
                     f"{counted.flops / 1e6:.1f}", cls.description])
    return rows, refused


def cmd_archs(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from cmkd.archs import ARCHS

    if args.channels < 1 or args.image_size < 1 or not 4 <= args.width <= 256:
        raise UserError("--channels and --image-size must be positive, --width in 4..256 (64: the paper's)")
    names = list(ARCHS) + list(args.timm or [])
    rows, refused = arch_rows(args.channels, args.image_size, args.width, names)
    print(f"architectures for {args.channels} channel(s) at {args.image_size}x{args.image_size} px"
          f"{f', width {args.width} (resnet18, mlp)' if args.width != 64 else ''}; FLOPs per sample, a multiply-add = 2; "
          "stages as name:channels/stride; any timm model as timm:<name>")
    print(tabulate(rows, headers=["architecture", "family", "input", "pooled", "stages", "params (M)", "MFLOPs",
                                  "description"], tablefmt="simple", maxcolwidths=[None, None, None, None, 44, None, None, 40]))
    for line in refused:
        print(f"cmkd: note: {line}", file=sys.stderr)
    return 0


def add_parser(sub) -> None:
    a = sub.add_parser("archs", help="list architectures with parameters and FLOPs for a channel count and image size")
    a.add_argument("--channels", type=int, default=3, help="input channels (an image's; a vector's D for mlp)")
    a.add_argument("--image-size", type=int, default=32, help="image side in px")
    a.add_argument("--width", type=int, default=64, help="base width of the architectures that take one (resnet18, mlp)")
    a.add_argument("--timm", action="append", metavar="timm:NAME", help="also list this timm model (repeatable)")
    a.set_defaults(func=cmd_archs)
