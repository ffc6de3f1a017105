"""click parameter types shared by the commands."""

from __future__ import annotations

import click


def parse_size(text: str) -> tuple[int, int]:
    """'512' -> (512, 512); '480x640' -> (480, 640), read as HEIGHTxWIDTH."""
    parts = text.lower().strip().split("x")
    if len(parts) not in (1, 2) or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"size {text!r} is not HEIGHTxWIDTH (e.g. 480x640) or a single number")
    h, w = (int(parts[0]), int(parts[-1]))
    if h <= 0 or w <= 0:
        raise ValueError(f"size {text!r} must be positive")
    return h, w


class SizeType(click.ParamType):
    name = "HxW"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            return parse_size(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class SizeListType(click.ParamType):
    """Comma-separated sizes: '37x211,640x480'."""

    name = "HxW[,HxW...]"

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        try:
            return [parse_size(part) for part in value.split(",") if part.strip()]
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


SIZE = SizeType()
SIZE_LIST = SizeListType()
