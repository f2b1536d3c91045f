"""Contact sheets: a grid of thumbnails with captions, to look at a catalog or a set of results."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

_CAPTION_PX = 11
_BG = (250, 250, 252)
_FG = (40, 40, 48)


_ASCII = str.maketrans({"\u2014": "-", "\u2013": "-", "\u2026": "...", "\u2019": "'"})


def _font(px: int):
    """(font, needs_ascii): DejaVu where installed (it has the em dash), else Pillow's default font."""
    for name in ("DejaVuSansCondensed.ttf", "DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, px), False
        except OSError:
            pass
    try:
        return ImageFont.load_default(size=px), True
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default(), True


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """Shorten text with an ellipsis until it fits `width` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "..", font=font) > width:
        text = text[:-1]
    return text.rstrip() + ".."


def contact_sheet(images: list[np.ndarray], titles: list[str] | None, out_png: str | os.PathLike,
                  columns: int = 8, cell: int = 128) -> None:
    """Grid of thumbnails with a small caption under each (PIL default font is fine), saved as PNG."""
    if len(images) == 0:
        raise ValueError("contact_sheet needs at least one image")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"{len(images)} images but {len(titles)} titles")
    columns = max(1, min(int(columns), len(images)))
    rows = (len(images) + columns - 1) // columns
    caption = _CAPTION_PX + 6 if titles is not None else 0
    pad = 4
    cw, ch = cell + pad, cell + caption + pad
    sheet = Image.new("RGB", (columns * cw + pad, rows * ch + pad), _BG)
    draw = ImageDraw.Draw(sheet)
    font, ascii_only = _font(_CAPTION_PX)
    for i, rgb in enumerate(images):
        arr = np.asarray(rgb)
        if arr.dtype != np.uint8:
            arr = np.clip(arr, 0, 255).astype(np.uint8)
        img = Image.fromarray(arr if arr.ndim == 3 else np.stack([arr] * 3, -1)).convert("RGB")
        img = img.resize((cell, cell), Image.LANCZOS if img.width > cell else Image.BICUBIC)
        x, y = pad + (i % columns) * cw, pad + (i // columns) * ch
        sheet.paste(img, (x, y))
        if titles is not None:
            text = str(titles[i]).translate(_ASCII) if ascii_only else str(titles[i])
            text = _fit(draw, text, font, cell)
            draw.text((x, y + cell + 2), text, fill=_FG, font=font)
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, "PNG")
