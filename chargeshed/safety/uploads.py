"""Photo uploads: only real images, decoded and re-encoded (no EXIF/GPS), stored outside static/.

A photo is accepted when Pillow decodes it as JPEG, PNG or WebP and it carries no markup that a
browser could run (polyglots). What is stored is a fresh JPEG made from the decoded pixels, so
nothing of the uploaded file survives but the picture.

Memory: a decoded picture costs 3-4 bytes per pixel, so the pixel caps are what bound it. JPEG
(what phone cameras write) is decoded at a reduced scale (1/2 … 1/8, Pillow's draft mode) straight
to about MAX_SIDE; PNG and WebP cannot be decoded smaller, so they get a far lower cap, and every
picture is shrunk in place to MAX_SIDE before any copy is made. At most DECODE_SLOTS pictures are
decoded at once per process; the rest wait their turn (then are refused with "busy").
"""

from __future__ import annotations

import io
import logging
import os
import re
import secrets
import threading
from contextlib import contextmanager
from dataclasses import dataclass

from flask import current_app
from flask_babel import gettext as _
from PIL import Image, ImageOps, UnidentifiedImageError
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

log = logging.getLogger(__name__)

MAX_PHOTOS = 3
MAX_PHOTO_BYTES = 8 * 1024 * 1024
# Pixel caps by format. A 50 MP camera JPEG is decoded at 1/4 scale (about 3 MP); PNG and WebP
# (screenshots: a phone's is 3-4 MP) decode in full, and WebP decoding needs ~15 bytes per pixel.
MAX_PIXELS = {"JPEG": 50_000_000, "PNG": 8_000_000, "WEBP": 4_200_000}
MAX_SIDE = 2000
# Pictures decoded at the same time in one process, and how long a request waits for its turn.
DECODE_SLOTS = 2
DECODE_WAIT_SECONDS = 20
THUMB_SIDE = 320
JPEG_QUALITY = 85
ALLOWED_FORMATS = set(MAX_PIXELS)

# Markup a browser might run if the file were ever served as HTML or SVG.
_MARKUP = re.compile(
    rb"<\s*(script|html|body|iframe|object|embed|svg[\s>/]|!doctype\s+html|\?php)|javascript:|on(error|load)\s*=",
    re.IGNORECASE,
)


_decoding = threading.BoundedSemaphore(DECODE_SLOTS)


@contextmanager
def _decode_slot():
    """Hold one of the process's decoding slots (refuses with a clear message after a long wait)."""
    if not _decoding.acquire(timeout=DECODE_WAIT_SECONDS):
        raise PhotoRejected(_("Many photos are being received right now. Please try again in a minute."))
    try:
        yield
    finally:
        _decoding.release()


class PhotoRejected(ValueError):
    """A file that is not a photo we accept; the message says why, for the person who sent it."""


@dataclass(frozen=True)
class CleanPhoto:
    """A re-encoded photo and its thumbnail, both JPEG bytes without metadata."""

    data: bytes
    thumb: bytes
    width: int
    height: int


def _sniff(head: bytes) -> str | None:
    """A short name for what the first bytes look like (used for clear messages)."""
    stripped = head.lstrip()[:256].lower()
    if stripped.startswith((b"<svg", b"<?xml")) or b"<svg" in stripped:
        return "svg"
    if stripped.startswith((b"<!doctype", b"<html", b"<")):
        return "html"
    if head[4:12] in (b"ftypheic", b"ftypheix", b"ftyphevc", b"ftypmif1", b"ftypmsf1"):
        return "heic"
    return None


def clean_photo(raw: bytes, max_bytes: int = MAX_PHOTO_BYTES) -> CleanPhoto:
    """Check an uploaded file and return a clean JPEG and thumbnail, or raise PhotoRejected."""
    if not raw:
        raise PhotoRejected(_("The file is empty."))
    if len(raw) > max_bytes:
        raise PhotoRejected(
            _("The photo is larger than %(mb)s MB. Please choose a smaller photo.", mb=max_bytes // (1024 * 1024))
        )
    kind = _sniff(raw[:512])
    if kind == "heic":
        raise PhotoRejected(
            _(
                "HEIC photos cannot be read. Please send it as JPEG (on iPhone: Settings › "
                "Camera › Formats › Most Compatible)."
            )
        )
    if kind in ("svg", "html"):
        raise PhotoRejected(_("This file is not a photo. Please choose a JPEG, PNG or WebP photo."))
    if _MARKUP.search(raw):
        raise PhotoRejected(
            _("This file contains more than a picture and was refused. Please take or choose a plain photo.")
        )
    with _decode_slot():
        picture = _decode_small(raw)
    thumb = picture.copy()
    thumb.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.LANCZOS)
    return CleanPhoto(data=_jpeg(picture), thumb=_jpeg(thumb), width=picture.width, height=picture.height)


def _decode_small(raw: bytes) -> Image.Image:
    """The picture upright, as RGB, at most MAX_SIDE on its longer side, decoded in bounded memory."""
    try:
        with Image.open(io.BytesIO(raw)) as image:
            if image.format not in ALLOWED_FORMATS:
                raise PhotoRejected(_("Only JPEG, PNG or WebP photos are accepted."))
            width, height = image.size
            if width * height > MAX_PIXELS[image.format] or width < 1 or height < 1:
                raise PhotoRejected(_("The picture is too large in pixels. Please choose a smaller photo."))
            # JPEG: decode at 1/2, 1/4 or 1/8 scale; any format: shrink in place before copying.
            ratio = min(1.0, MAX_SIDE / max(width, height))
            image.draft("RGB", (max(1, int(width * ratio)), max(1, int(height * ratio))))
            image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
            upright = ImageOps.exif_transpose(image)
            return _flatten(upright)
    except PhotoRejected:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise PhotoRejected(
            _("This file is not a photo we can read. Please choose a JPEG, PNG or WebP photo.")
        ) from exc


def _flatten(image: Image.Image) -> Image.Image:
    """RGB pixels only: transparency is laid on white; palettes and CMYK are converted."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def _jpeg(image: Image.Image) -> bytes:
    """Encode as baseline JPEG with no EXIF, XMP, ICC profile or comments."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return buffer.getvalue()


def read_upload(stream, max_bytes: int = MAX_PHOTO_BYTES) -> bytes:
    """Read an upload stream, refusing it as soon as it exceeds `max_bytes`."""
    data = stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise PhotoRejected(
            _("The photo is larger than %(mb)s MB. Please choose a smaller photo.", mb=max_bytes // (1024 * 1024))
        )
    return data


def upload_dir() -> str:
    """Where photos live: SAFETY_UPLOAD_DIR, else <instance>/uploads/safety (never under static/)."""
    path = current_app.config.get("SAFETY_UPLOAD_DIR") or os.path.join(current_app.instance_path, "uploads", "safety")
    os.makedirs(path, exist_ok=True)
    return path


def new_stored_name() -> str:
    """A random file stem; never derived from the uploaded file name."""
    return secrets.token_hex(16)


def photo_path(stored_name: str, thumb: bool = False) -> str:
    """The file of a stored photo (or its thumbnail)."""
    if not re.fullmatch(r"[0-9a-f]{32}", stored_name):
        raise ValueError("bad stored name")
    return os.path.join(upload_dir(), f"{stored_name}{'_t' if thumb else ''}.jpg")


def save_files(stored_name: str, photo: CleanPhoto) -> None:
    """Write the photo and thumbnail atomically (temporary file, then rename)."""
    for path, data in ((photo_path(stored_name), photo.data), (photo_path(stored_name, True), photo.thumb)):
        temporary = f"{path}.tmp"
        with open(temporary, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)


def _remove_paths(paths: list[str]) -> None:
    """Remove files written for photos whose database rows were not stored."""
    for path in paths:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
        except OSError:
            log.warning("could not remove the photo file %s", path, exc_info=True)


# session.info keys: the photo files of each open transaction (outermost or savepoint), and the mark
# a commit leaves for the transaction that ends right after it.
_PENDING = "safety_photo_files"
_COMMITTED = "safety_photo_files_committed"


def remove_unless_committed(session: Session, stored_name: str) -> None:
    """Tie a photo's files to the session's transaction (call before writing them): they are removed
    when that transaction ends without a commit.

    A savepoint that is released hands its files on to the transaction around it; one rolled back
    removes them. So do a rollback, a failed commit and a session closed without a commit (a request
    that ended without one): a stored file always has its committed row. The caller commits.
    """
    pending = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = {}
        event.listen(session, "after_commit", _mark_committed)
        event.listen(session, "after_transaction_end", _settle_files)
    transaction = session.get_nested_transaction() or session.get_transaction() or session.begin()
    pending.setdefault(transaction, []).extend(photo_path(stored_name, thumb) for thumb in (False, True))


def _mark_committed(session: Session) -> None:
    session.info[_COMMITTED] = True  # the transaction committing now ends next


def _settle_files(session: Session, transaction: SessionTransaction) -> None:
    committed = session.info.pop(_COMMITTED, False)
    pending = session.info[_PENDING]
    paths = pending.pop(transaction, None)
    if not paths:
        return
    if not committed:
        _remove_paths(paths)
        return
    enclosing = transaction.parent  # None: the outermost transaction committed, the files stay
    while enclosing is not None and not enclosing.nested and enclosing.parent is not None:
        enclosing = enclosing.parent
    if enclosing is not None:
        pending.setdefault(enclosing, []).extend(paths)
