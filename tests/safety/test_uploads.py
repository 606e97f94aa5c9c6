"""Photo uploads: real malicious samples are refused; EXIF and GPS are gone from what is stored and served."""

import io
import os

import pytest
from PIL import Image
from sqlalchemy import select

from chargeshed.extensions import db
from chargeshed.safety import uploads
from chargeshed.safety.models import CasePhoto, HazardCase
from tests.safety import samples


def test_sample_really_carries_gps_before_upload():
    data = samples.jpeg_with_gps()
    assert samples.has_gps(data) and b"SnoopPhone" in data


def test_clean_photo_drops_exif_and_gps_and_keeps_the_picture(en_context):
    with en_context():
        clean = uploads.clean_photo(samples.jpeg_with_gps())
    for data in (clean.data, clean.thumb):
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == "JPEG"
            assert not image.getexif()
            assert "exif" not in image.info
        assert b"SnoopPhone" not in data and b"Exif" not in data
    assert (clean.width, clean.height) == (640, 480)
    with Image.open(io.BytesIO(clean.thumb)) as thumb:
        assert max(thumb.size) == uploads.THUMB_SIDE


def test_orientation_is_applied_before_exif_is_dropped(en_context):
    with en_context():
        clean = uploads.clean_photo(samples.jpeg_with_gps(orientation=6))  # camera held upright
    assert (clean.width, clean.height) == (480, 640)


@pytest.mark.parametrize("make", [samples.png_rgba, samples.webp])
def test_png_and_webp_are_accepted_and_become_jpeg(en_context, make):
    with en_context():
        clean = uploads.clean_photo(make())
    assert clean.data[:3] == b"\xff\xd8\xff"


@pytest.mark.parametrize(
    "data, words",
    [
        (samples.gif_html_polyglot(), "more than a picture"),
        (samples.jpeg_html_polyglot(), "more than a picture"),
        (samples.SVG, "not a photo"),
        (samples.HTML_AS_JPG, "not a photo"),
        (samples.heic_header(), "HEIC"),
        (samples.truncated_jpeg(), "not a photo we can read"),
        (b"just some text pretending\n", "not a photo we can read"),
        (b"", "empty"),
    ],
)
def test_files_that_are_not_plain_photos_are_refused_with_a_reason(en_context, data, words):
    with en_context(), pytest.raises(uploads.PhotoRejected) as refused:
        uploads.clean_photo(data)
    assert words in str(refused.value)


def test_polyglot_samples_do_decode_as_images_so_the_markup_check_is_what_stops_them():
    for data in (samples.gif_html_polyglot(), samples.jpeg_html_polyglot()):
        with Image.open(io.BytesIO(data)) as image:
            image.load()


def test_decompression_bomb_is_refused(en_context):
    data = samples.bomb_png()
    assert len(data) < 200_000
    with en_context(), pytest.raises(uploads.PhotoRejected) as refused:
        uploads.clean_photo(data)
    assert "too large in pixels" in str(refused.value)


def test_oversized_file_is_refused_before_decoding(en_context):
    with en_context(), pytest.raises(uploads.PhotoRejected) as refused:
        uploads.read_upload(io.BytesIO(b"\xff\xd8\xff" + b"\0" * uploads.MAX_PHOTO_BYTES))
    assert "larger than 8 MB" in str(refused.value)


def _post_report(client, building_id, files, **fields):
    data = {"hazard_type": "bike_indoors", "building": str(building_id), "floor": "3", "spot": "lobby"}
    data.update(fields)
    data["photos"] = files
    return client.post("/report", data=data, content_type="multipart/form-data")


def test_report_with_gps_photo_stores_and_serves_it_without_metadata(client, make_site, building, upload_dir):
    site = make_site()
    response = _post_report(client, building(site, 4).id, [(io.BytesIO(samples.jpeg_with_gps()), "IMG_0001.jpg")])
    assert response.status_code == 303
    db.session.rollback()  # what the page committed, not what its session still holds
    case = db.session.execute(select(HazardCase)).scalar_one()
    photo = case.photos[0]
    stored = sorted(os.listdir(upload_dir))
    assert stored == sorted([f"{photo.stored_name}.jpg", f"{photo.stored_name}_t.jpg"])
    assert "IMG_0001" not in "".join(stored)
    with open(upload_dir / f"{photo.stored_name}.jpg", "rb") as handle:
        on_disk = handle.read()
    assert not samples.has_gps(on_disk) and b"SnoopPhone" not in on_disk
    served = client.get(f"/report/t/{case.tracking_token}/photos/{photo.id}")
    assert served.status_code == 200 and served.mimetype == "image/jpeg"
    assert served.data == on_disk and not samples.has_gps(served.data)
    assert served.headers["X-Content-Type-Options"] == "nosniff"


def test_photos_are_not_stored_under_static(app, client, make_site, building, upload_dir):
    site = make_site()
    _post_report(client, building(site, 4).id, [(io.BytesIO(samples.plain_jpeg()), "a.jpg")])
    db.session.rollback()  # what the page committed, not what its session still holds
    assert not str(upload_dir).startswith(app.static_folder)
    assert uploads.photo_path(db.session.execute(select(CasePhoto)).scalar_one().stored_name).startswith(
        str(upload_dir)
    )


@pytest.mark.parametrize(
    "data, name, words",
    [
        (samples.gif_html_polyglot(), "cat.gif", "more than a picture"),
        (samples.jpeg_html_polyglot(), "poly.jpg", "more than a picture"),
        (samples.SVG, "drawing.svg", "not a photo"),
        (samples.HTML_AS_JPG, "photo.jpg", "not a photo"),
    ],
)
def test_fake_images_are_refused_on_the_form_and_nothing_is_stored(
    client, make_site, building, upload_dir, data, name, words
):
    site = make_site()
    response = _post_report(client, building(site, 4).id, [(io.BytesIO(data), name)], description="keep this text")
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert words in page and name in page
    assert "keep this text" in page  # what was typed is kept
    assert db.session.execute(select(HazardCase)).first() is None
    assert not upload_dir.exists() or not os.listdir(upload_dir)


def test_more_than_three_photos_are_refused(client, make_site, building):
    site = make_site()
    files = [(io.BytesIO(samples.plain_jpeg()), f"{i}.jpg") for i in range(4)]
    response = _post_report(client, building(site, 4).id, files)
    assert response.status_code == 400 and "at most 3 photos" in response.get_data(as_text=True)


def test_a_photo_over_the_limit_gets_a_clear_message(client, make_site, building):
    site = make_site()
    big = samples.plain_jpeg() + b"\0" * uploads.MAX_PHOTO_BYTES
    response = _post_report(client, building(site, 4).id, [(io.BytesIO(big), "big.jpg")])
    assert response.status_code == 400 and "larger than 8 MB" in response.get_data(as_text=True)


def test_a_request_over_the_total_limit_gets_the_form_back_with_a_message(app, client, make_site, building):
    site = make_site()
    app.config["MAX_CONTENT_LENGTH"] = 2 * 1024 * 1024
    big = b"\xff" * (3 * 1024 * 1024)
    response = _post_report(client, building(site, 4).id, [(io.BytesIO(big), "big.jpg")])
    assert response.status_code == 413
    assert "too large together" in response.get_data(as_text=True)
