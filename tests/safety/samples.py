"""Image samples made in the test: real photos, and files that pretend to be photos."""

from __future__ import annotations

import io

from PIL import ExifTags, Image, ImageDraw

GPS_LATITUDE = (27.0, 50.0, 7.5)
GPS_LONGITUDE = (113.0, 9.0, 30.0)


def _picture(size=(640, 480), colour=(200, 60, 40)) -> Image.Image:
    image = Image.new("RGB", size, (235, 235, 225))
    draw = ImageDraw.Draw(image)
    draw.rectangle((size[0] // 8, size[1] // 8, size[0] * 7 // 8, size[1] // 2), fill=colour)
    draw.line((0, size[1] - 20, size[0], 30), fill=(20, 20, 20), width=6)
    return image


def plain_jpeg(size=(640, 480)) -> bytes:
    buffer = io.BytesIO()
    _picture(size).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def jpeg_with_gps(orientation: int | None = None, size=(640, 480)) -> bytes:
    """A JPEG whose EXIF holds the camera, a GPS position (Zhuzhou) and optionally an orientation."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "SnoopPhone"
    exif[ExifTags.Base.Model] = "Model GPS-1"
    if orientation:
        exif[ExifTags.Base.Orientation] = orientation
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = GPS_LATITUDE
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = GPS_LONGITUDE
    buffer = io.BytesIO()
    _picture(size).save(buffer, "JPEG", exif=exif, quality=90)
    return buffer.getvalue()


def png_rgba() -> bytes:
    image = Image.new("RGBA", (300, 200), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse((20, 20, 280, 180), fill=(10, 120, 50, 255))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def webp() -> bytes:
    buffer = io.BytesIO()
    _picture((320, 240)).save(buffer, "WEBP")
    return buffer.getvalue()


def gif_html_polyglot() -> bytes:
    """A GIF that decodes as an image and is also an HTML page with a script."""
    buffer = io.BytesIO()
    _picture((60, 40)).convert("P").save(buffer, "GIF")
    return buffer.getvalue() + b"<html><body><script>alert(document.cookie)</script></body></html>"


def jpeg_html_polyglot() -> bytes:
    """A JPEG that decodes as an image, with HTML hidden in a comment segment."""
    buffer = io.BytesIO()
    _picture((120, 90)).save(buffer, "JPEG", comment=b"<html><script>fetch('/safety/cases')</script></html>")
    return buffer.getvalue()


SVG = (
    b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
    b'<script>alert(1)</script><rect width="10" height="10"/></svg>'
)
HTML_AS_JPG = b"<!DOCTYPE html><html><body><script>alert('x')</script></body></html>"


def heic_header() -> bytes:
    """The start of an HEIC file (ftyp box): what an iPhone sends when it does not convert."""
    return b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 200


def bomb_png() -> bytes:
    """A small PNG that decodes to far more pixels than a photo has."""
    buffer = io.BytesIO()
    Image.new("1", (7100, 7100)).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def truncated_jpeg() -> bytes:
    data = plain_jpeg()
    return data[: len(data) // 2]


def has_gps(data: bytes) -> bool:
    with Image.open(io.BytesIO(data)) as image:
        return bool(image.getexif().get_ifd(ExifTags.IFD.GPSInfo))
