"""The fonts every PDF uses: Noto Sans CJK SC, embedded (a subset), so any printer prints what we saw.

reportlab embeds TrueType fonts only (glyf outlines), while Debian's fonts-noto-cjk ships OpenType
collections with CFF outlines. On first use we cut the Simplified Chinese face down to the characters a
ChargeShed document can hold (ASCII, Latin-1, punctuation, the 6,763 GB2312 hanzi, full-width forms),
convert its outlines to TrueType with fontTools, and cache the result; reportlab then embeds the glyphs
each PDF actually uses. Characters outside the cached set are added by rebuilding the cache once.

Nothing here reads the app: the cache directory is CHARGESHED_FONT_CACHE, else a folder in the
system's temporary directory.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterable

# Where Debian (fonts-noto-cjk) puts the collections; CHARGESHED_CJK_FONT_DIR overrides.
FONT_DIRS = ("/usr/share/fonts/opentype/noto", "/usr/share/fonts/noto-cjk", "/usr/share/fonts/google-noto-cjk")
FACES = {"regular": "NotoSansCJK-Regular.ttc", "bold": "NotoSansCJK-Bold.ttc"}
FAMILY = "Noto Sans CJK SC"
REGULAR = "ChargeShedSans"
BOLD = "ChargeShedSans-Bold"
_SUBSET_VERSION = "1"

_lock = threading.Lock()
_registered: dict[str, frozenset[int]] = {}


class FontMissing(RuntimeError):
    """fonts-noto-cjk is not installed where we look."""


def _base_characters() -> set[int]:
    """Everything a statement, sticker sheet or safety summary normally needs."""
    chars = set(range(0x20, 0x7F)) | set(range(0xA0, 0x180))
    chars |= set(range(0x2000, 0x2070)) | set(range(0x2190, 0x2200)) | set(range(0x2460, 0x2500))
    chars |= set(range(0x3000, 0x3040)) | set(range(0xFF00, 0xFFF0)) | {0x20AC, 0x2103, 0x2116, 0x2122, 0x25CF}
    for high in range(0xB0, 0xF8):  # GB2312: the 6,763 hanzi of everyday Simplified Chinese
        for low in range(0xA1, 0xFF):
            try:
                chars.add(ord(bytes((high, low)).decode("gb2312")))
            except UnicodeDecodeError:
                continue
    return chars


def _source(face: str) -> str:
    dirs = [os.environ["CHARGESHED_CJK_FONT_DIR"]] if os.environ.get("CHARGESHED_CJK_FONT_DIR") else FONT_DIRS
    for folder in dirs:
        path = os.path.join(folder, FACES[face])
        if os.path.exists(path):
            return path
    raise FontMissing(f"{FACES[face]} not found in {', '.join(dirs)} (apt-get install fonts-noto-cjk)")


def _cache_dir() -> str:
    folder = os.environ.get("CHARGESHED_FONT_CACHE") or os.path.join(tempfile.gettempdir(), "chargeshed-fonts")
    os.makedirs(folder, exist_ok=True)
    return folder


def _to_truetype(font) -> None:
    """Replace the CFF outlines of `font` by quadratic TrueType outlines (glyf/loca), in place."""
    from fontTools.pens.cu2quPen import Cu2QuPen
    from fontTools.pens.ttGlyphPen import TTGlyphPen
    from fontTools.ttLib import newTable

    order = font.getGlyphOrder()
    glyph_set = font.getGlyphSet()
    glyphs = {}
    for name in order:
        pen = TTGlyphPen(glyph_set)
        glyph_set[name].draw(Cu2QuPen(pen, max_err=1.0, reverse_direction=True))
        glyphs[name] = pen.glyph()
    del font["CFF "]
    if "VORG" in font:
        del font["VORG"]
    glyf = font["glyf"] = newTable("glyf")
    glyf.glyphOrder = order
    glyf.glyphs = glyphs
    font["loca"] = newTable("loca")
    maxp = font["maxp"]
    maxp.tableVersion = 0x00010000
    for field in (
        "maxZones",
        "maxTwilightPoints",
        "maxStorage",
        "maxFunctionDefs",
        "maxInstructionDefs",
        "maxStackElements",
        "maxSizeOfInstructions",
        "maxComponentElements",
    ):
        setattr(maxp, field, 0)
    maxp.maxZones = 1
    font["head"].glyphDataFormat = 0
    post = font["post"]
    post.formatType = 2.0
    post.extraNames = []
    post.mapping = {}
    post.glyphOrder = order
    font.sfntVersion = "\x00\x01\x00\x00"


def _build(face: str, chars: set[int], target: str) -> None:
    """Subset the Simplified Chinese face of the collection to `chars`, as TrueType, into `target`."""
    from fontTools import subset
    from fontTools.ttLib import TTCollection

    collection = TTCollection(_source(face))
    font = next(f for f in collection.fonts if f["name"].getDebugName(1) == FAMILY)
    options = subset.Options()
    options.layout_features = []  # plain text: no shaping tables needed
    options.hinting = False
    options.name_IDs = ["*"]
    options.notdef_outline = True
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=chars)
    subsetter.subset(font)
    _to_truetype(font)
    handle, partial = tempfile.mkstemp(dir=os.path.dirname(target), suffix=".ttf")
    os.close(handle)
    font.save(partial)
    os.chmod(partial, 0o644)
    os.replace(partial, target)  # atomic: another process never reads half a file


def _ensure(face: str, name: str, extra: Iterable[str]) -> None:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    wanted = {ord(c) for text in extra for c in text if ord(c) >= 0x20}
    covered = _registered.get(name)
    if covered is not None and wanted <= covered:
        return
    chars = _base_characters() | wanted | set(covered or ())
    extra_key = format(abs(hash(frozenset(chars - _base_characters()))), "x") if chars - _base_characters() else "base"
    target = os.path.join(_cache_dir(), f"{name}-{_SUBSET_VERSION}-{extra_key}.ttf")
    if not os.path.exists(target):
        _build(face, chars, target)
    pdfmetrics.registerFont(TTFont(name, target))
    _registered[name] = frozenset(chars)


def pdf_fonts(*texts: str) -> tuple[str, str]:
    """(regular, bold) reportlab font names, embedded subsets that cover `texts` (any extra characters).

    Pass the document's unusual text (names, addresses) when it may hold rare characters; the common
    ones are always there.
    """
    from reportlab import rl_config

    with _lock:
        _ensure("regular", REGULAR, texts)
        _ensure("bold", BOLD, texts)
        # reportlab falls back to Helvetica (never embedded) wherever a font is not named, e.g. in charts'
        # graphics state: make its default ours.
        rl_config.canvas_basefontname = rl_config.defaultGraphicsFontName = REGULAR
    return REGULAR, BOLD
