"""Photo decoding stays within a memory budget: worst-case pictures measured in a fresh process."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time

import pytest
from PIL import Image

from chargeshed.safety import uploads
from tests.production.live import ROOT

# Peak memory (MB above the process's warmed-up baseline) allowed for one report's three photos.
BUDGET_MB = 110

MEASURE = r"""
import io, sys
from flask import Flask
from PIL import Image
from chargeshed.safety import uploads


def status_kb(field):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


data = open(sys.argv[1], "rb").read()
with Flask("measure").app_context():
    fmt = Image.open(io.BytesIO(data)).format
    small = io.BytesIO()
    Image.new("RGB", (64, 64)).save(small, fmt)
    uploads.clean_photo(small.getvalue())  # load the codec's libraries before the baseline
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # reset the peak (VmHWM) to the current resident size
    before = status_kb("VmRSS")
    for _ in range(uploads.MAX_PHOTOS):
        uploads.clean_photo(data)
    peak = status_kb("VmHWM")
print((peak - before) / 1024)
"""


def _worst_case(fmt: str) -> tuple[bytes, tuple[int, int]]:
    """A picture of `fmt` just under its pixel cap (a smooth picture, so the file stays small)."""
    cap = uploads.MAX_PIXELS[fmt]
    width = int((cap * 4 / 3) ** 0.5)
    height = cap // width
    mode = "RGBA" if fmt == "PNG" else "RGB"
    picture = Image.linear_gradient("L").resize((width, height)).convert(mode)
    buffer = io.BytesIO()
    picture.save(buffer, fmt)
    return buffer.getvalue(), (width, height)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_three_worst_case_photos_decode_within_the_memory_budget(tmp_path, fmt):
    data, size = _worst_case(fmt)
    assert len(data) <= uploads.MAX_PHOTO_BYTES and size[0] * size[1] <= uploads.MAX_PIXELS[fmt]
    path = tmp_path / f"worst.{fmt.lower()}"
    path.write_bytes(data)
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, str(path)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    peak_mb = float(result.stdout.strip())
    print(f"{fmt} {size[0]}x{size[1]}: peak {peak_mb:.0f} MB above baseline for {uploads.MAX_PHOTOS} photos")
    assert peak_mb < BUDGET_MB


@pytest.mark.parametrize("fmt, size", [("PNG", (3500, 2400)), ("WEBP", (2600, 1700)), ("JPEG", (8200, 6200))])
def test_a_picture_over_its_format_cap_is_refused_before_decoding(en_context, fmt, size):
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 200, 200)).save(buffer, fmt)
    with en_context(), pytest.raises(uploads.PhotoRejected) as refused:
        uploads.clean_photo(buffer.getvalue())
    assert "too large in pixels" in str(refused.value)


def test_no_more_than_the_decoding_slots_decode_at_once(monkeypatch, en_context):
    inside, most, lock = [0], [0], threading.Lock()
    real = uploads._decode_small

    def counting(raw):
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.05)  # hold the slot long enough for the other threads to pile up
        try:
            return real(raw)
        finally:
            with lock:
                inside[0] -= 1

    monkeypatch.setattr(uploads, "_decode_small", counting)
    data, _ = _worst_case("PNG")
    errors = []

    def upload():
        try:
            with en_context():
                uploads.clean_photo(data)
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=upload) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and most[0] == uploads.DECODE_SLOTS
