"""Static files: content-hashed names, compressed once (gzip and brotli), served by WhiteNoise.

At start-up every file under static/ is copied into STATIC_BUILD_DIR (default instance/static)
twice: under its own name and under a name carrying a hash of its content (css/app.3f2a9c1b0d4e.css).
WhiteNoise's compressor writes the .gz and .br variants beside each copy; a file whose hashed copy
exists already is not touched again, so each version of a file is compressed once. WhiteNoise then
serves that folder in front of the app, under /static, choosing the variant the browser accepts;
`url_for('static', filename=...)` hands out the hashed name, which is cached for a year (immutable),
while the plain name stays servable with a short cache life.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile

from flask import Flask
from whitenoise import WhiteNoise
from whitenoise.compress import Compressor

HASH_LENGTH = 12
HASHED_NAME = re.compile(rf"\.[0-9a-f]{{{HASH_LENGTH}}}\.\w+$")
PLAIN_MAX_AGE = 300  # seconds: a file asked for by its plain name may change with the next release


def hashed_name(name: str, data: bytes) -> str:
    """`css/app.css` → `css/app.<first 12 hex digits of its SHA-256>.css`."""
    stem, ext = os.path.splitext(name)
    return f"{stem}.{hashlib.sha256(data).hexdigest()[:HASH_LENGTH]}{ext}"


def _install(target: str, name: str, data: bytes, compressor: Compressor) -> None:
    """Write `data` as target/name with its compressed variants; the file itself lands last, atomically."""
    path = os.path.join(target, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target, prefix=".build-") as scratch:
        staged = os.path.join(scratch, os.path.basename(path))
        with open(staged, "wb") as handle:
            handle.write(data)
        variants = compressor.compress(staged) if compressor.should_compress(staged) else []
        for variant in variants:
            os.replace(variant, path + variant[len(staged) :])
        for suffix in (".br", ".gz"):  # a variant the new content no longer earns must not be served
            if staged + suffix not in variants and os.path.exists(path + suffix):
                os.remove(path + suffix)
        os.replace(staged, path)


def _unchanged(path: str, data: bytes) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read() == data
    except FileNotFoundError:
        return False


def build(source: str, target: str) -> dict[str, str]:
    """Bring `target` up to date with `source`; return the manifest {plain name: hashed name}.

    Safe to run from several processes at once (every file lands by an atomic rename).
    """
    os.makedirs(target, exist_ok=True)
    compressor = Compressor(quiet=True)
    manifest: dict[str, str] = {}
    for folder, dirs, files in os.walk(source):
        dirs.sort()
        for filename in sorted(files):
            path = os.path.join(folder, filename)
            name = os.path.relpath(path, source).replace(os.sep, "/")
            with open(path, "rb") as handle:
                data = handle.read()
            manifest[name] = hashed = hashed_name(name, data)
            if not os.path.exists(os.path.join(target, hashed)):
                _install(target, hashed, data, compressor)
            if not _unchanged(os.path.join(target, name), data):
                _install(target, name, data, compressor)
    return manifest


def _is_hashed(_path: str, url: str) -> bool:
    return bool(HASHED_NAME.search(url))


def _nosniff(headers, _path: str, _url: str) -> None:
    headers["X-Content-Type-Options"] = "nosniff"


def init_app(app: Flask) -> None:
    """Build the static folder and serve it with WhiteNoise; url_for('static') gives hashed names."""
    target = app.config["STATIC_BUILD_DIR"]
    manifest = build(app.static_folder, target)
    app.wsgi_app = WhiteNoise(
        app.wsgi_app,
        root=target,
        prefix=app.static_url_path,
        max_age=PLAIN_MAX_AGE,
        immutable_file_test=_is_hashed,
        add_headers_function=_nosniff,
    )
    app.extensions["static_manifest"] = manifest

    @app.url_defaults
    def hashed_static_names(endpoint: str, values: dict) -> None:
        if endpoint == "static" and values.get("filename") in manifest:
            values["filename"] = manifest[values["filename"]]
