"""The adversarial catalogue: every hostile or odd upload and bitstream gets its documented answer
(a 4xx problem, or success where the input is valid), and the server keeps serving afterwards."""

from __future__ import annotations

import io
import random
import struct
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

import codec
from svc_helpers import assert_problem, gradient, huge_header_png, image_bytes

# ---- uploads ------------------------------------------------------------------------------------------------


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("a.txt", "hello")
    return buffer.getvalue()


def _sixteen_bit() -> bytes:
    values = (np.arange(24 * 32, dtype=np.uint16).reshape(24, 32) * 80)
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, "PNG")  # uint16 -> mode I;16
    return buffer.getvalue()


def _palette_with_transparency() -> bytes:
    image = Image.fromarray(gradient(32, 24), "RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", transparency=0)
    return buffer.getvalue()


def _exif_rotated() -> bytes:
    image = Image.fromarray(gradient(40, 24), "RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif)
    return buffer.getvalue()


def _animated_gif() -> bytes:
    frames = [Image.new("RGB", (24, 16), color) for color in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buffer.getvalue()


PNG = image_bytes(32, 24)
JPEG = image_bytes(32, 24, "JPEG")

ACCEPTED = {
    # name: (bytes, content type the client claims, expected (width, height))
    "png": (PNG, "image/png", (32, 24)),
    "png_sent_as_jpeg": (PNG, "image/jpeg", (32, 24)),  # sniffed from the bytes
    "png_sent_as_text": (PNG, "text/plain", (32, 24)),
    "jpeg": (JPEG, "image/jpeg", (32, 24)),
    "webp": (image_bytes(32, 24, "WEBP"), "image/webp", (32, 24)),
    "bmp": (image_bytes(32, 24, "BMP"), "image/bmp", (32, 24)),
    "tiff": (image_bytes(32, 24, "TIFF"), "image/tiff", (32, 24)),
    "grayscale": (image_bytes(32, 24, mode="L"), "image/png", (32, 24)),
    "sixteen_bit": (_sixteen_bit(), "image/png", (32, 24)),
    "palette_with_transparency": (_palette_with_transparency(), "image/png", (32, 24)),
    "rgba": (image_bytes(32, 24, mode="RGBA"), "image/png", (32, 24)),
    "cmyk_jpeg": (image_bytes(32, 24, "JPEG", mode="CMYK"), "image/jpeg", (32, 24)),
    "exif_rotated": (_exif_rotated(), "image/jpeg", (24, 40)),  # stored as a viewer shows it
    "animated_gif": (_animated_gif(), "image/gif", (24, 16)),  # the first frame is encoded
}

REJECTED = {
    # name: (bytes, content type, status, code)
    "empty_file": (b"", "image/png", 422, "empty_image"),
    "html": (b"<!DOCTYPE html><html><body>hi</body></html>", "image/png", 415, "unsupported_image"),
    "svg": (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "image/svg+xml", 415,
            "unsupported_image"),
    "zip": (_zip(), "image/png", 415, "unsupported_image"),
    "random_bytes": (bytes(random.Random(1).getrandbits(8) for _ in range(512)), "image/png", 415,
                     "unsupported_image"),
    "truncated_png": (PNG[: len(PNG) // 2], "image/png", 422, "corrupt_image"),
    "truncated_jpeg": (JPEG[: len(JPEG) // 2], "image/jpeg", 422, "corrupt_image"),
    "png_signature_only": (PNG[:8], "image/png", 422, "corrupt_image"),
    "huge_header_png": (huge_header_png(), "image/png", 413, "image_too_large"),
    "over_max_pixels": (huge_header_png(5000, 5000), "image/png", 413, "image_too_large"),
    "wider_than_the_format": (image_bytes(20000, 3), "image/png", 413, "image_too_large"),
}


@pytest.mark.parametrize("name", list(ACCEPTED))
def test_accepted_uploads(idle_client, name):
    data, content_type, (width, height) = ACCEPTED[name]
    response = idle_client.post("/encode", files={"file": ("upload.bin", data, content_type)})
    assert response.status_code == 202, response.text
    job = response.json()
    assert (job["width"], job["height"]) == (width, height)


@pytest.mark.parametrize("name", list(REJECTED))
def test_rejected_uploads(idle_client, name):
    data, content_type, status, code = REJECTED[name]
    response = idle_client.post("/encode", files={"file": ("upload.png", data, content_type)})
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code
    assert idle_client.get("/metrics").text.count('gsic_jobs{state="queued"} 0.0') == 1  # nothing was queued


def test_odd_inputs_encode_like_their_rgb_rendering(client):
    """Grayscale, palette+alpha and EXIF inputs run to success (what is encoded is codec.load_image's RGB)."""
    from svc_helpers import wait_job

    for name in ("palette_with_transparency", "exif_rotated", "animated_gif"):
        data, content_type, _ = ACCEPTED[name]
        job = client.post("/encode", files={"file": ("x", data, content_type)},
                          data={"iterations": "10", "preset": "high"}).json()
        job = wait_job(client, job["id"])
        assert job["status"] == "succeeded", job
        decoded = codec.decode(client.get(job["result"]["url"]).content)
        reference = codec.load_image(data)
        assert decoded.shape == reference.shape
        assert codec.psnr(reference, decoded) == pytest.approx(job["result"]["psnr"], abs=0.01)


def test_empty_body_and_missing_part(idle_client):
    empty = idle_client.post("/encode")
    assert empty.status_code == 422 and empty.json()["code"] == "missing_file"
    raw = idle_client.post("/encode", content=PNG, headers={"content-type": "image/png"})
    assert raw.status_code == 422 and raw.json()["code"] == "missing_file"
    wrong_part = idle_client.post("/encode", files={"image": ("a.png", PNG, "image/png")})
    assert wrong_part.status_code == 422 and wrong_part.json()["code"] == "missing_file"
    text_field = idle_client.post("/encode", data={"file": "not a file"})
    assert text_field.status_code == 422
    assert_problem(_multipart(idle_client, "/encode", 'name="file"', PNG), 422, "missing_file")  # no filename


def _multipart(client, path: str, disposition: str, data: bytes):
    boundary = "gsic-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; {disposition}\r\n\r\n".encode() + data
            + f"\r\n--{boundary}--\r\n".encode())
    return client.post(path, content=body, headers={"content-type": f"multipart/form-data; boundary={boundary}"})


@pytest.mark.parametrize("content_type", ["multipart/form-data", "multipart/form-data; boundary=gsic"])
def test_an_unparsable_multipart_decode_is_bad_multipart(idle_client, content_type):
    response = idle_client.post("/decode", content=b"not a multipart body", headers={"content-type": content_type})
    assert_problem(response, 400, "bad_multipart")


def test_pixel_limit_is_configurable(make_client):
    client = make_client(workers=0, max_pixels=1000)
    response = client.post("/encode", files={"file": ("a.png", PNG)})  # 768 pixels
    assert response.status_code == 202
    response = client.post("/encode", files={"file": ("a.png", image_bytes(40, 30))})  # 1200 pixels
    assert response.status_code == 413 and response.json()["code"] == "image_too_large"


def test_oversize_body(make_client):
    client = make_client(workers=0, max_upload_bytes=64 * 1024)
    big = image_bytes(256, 256, "BMP")  # ~196 KB
    declared = client.post("/encode", files={"file": ("a.bmp", big)})
    assert declared.status_code == 413 and declared.json()["code"] == "body_too_large"

    def chunks():  # no Content-Length: the cap applies while the body streams in
        for start in range(0, len(big), 8192):
            yield big[start:start + 8192]

    streamed = client.post("/decode", content=chunks(), headers={"content-type": "application/octet-stream"})
    assert streamed.status_code == 413 and streamed.json()["code"] == "body_too_large"
    boundary = "xyz"
    multipart = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bmp\"\r\n"
                 f"Content-Type: image/bmp\r\n\r\n").encode() + big + f"\r\n--{boundary}--\r\n".encode()

    def multipart_chunks():
        for start in range(0, len(multipart), 8192):
            yield multipart[start:start + 8192]

    streamed_form = client.post("/encode", content=multipart_chunks(),
                                headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert streamed_form.status_code == 413 and streamed_form.json()["code"] == "body_too_large"
    assert client.get("/healthz").status_code == 200
    metrics = client.get("/metrics").text
    assert 'gsic_http_requests_total{method="POST",route="/encode",status="413"} 2.0' in metrics


def test_malformed_multipart(idle_client):
    response = idle_client.post("/encode", content=b"--b\r\ngarbage",
                                headers={"content-type": "multipart/form-data; boundary=b"})
    assert 400 <= response.status_code < 500
    assert response.headers["content-type"].startswith("application/problem+json")


# ---- bitstreams -------------------------------------------------------------------------------------------


def _offset(name: str) -> int:
    """Byte offset of a fixed header field (see docs/bitstream.md)."""
    from codec.format.bitstream import HEADER_FIELDS

    offset = 4  # magic
    for field in HEADER_FIELDS:
        if field.name == name:
            return offset
        offset += struct.calcsize("<" + field.fmt)
    raise KeyError(name)


def _with_field(data: bytes, name: str, fmt: str, value: int, fix_crc: bool = True) -> bytes:
    out = bytearray(data)
    struct.pack_into("<" + fmt, out, _offset(name), value)
    if fix_crc:
        body = bytes(out[:-4])
        out = bytearray(body + struct.pack("<I", zlib.crc32(body)))
    return bytes(out)


def _bad_bitstreams(good: bytes) -> dict[str, tuple[bytes, int, str, str | None]]:
    """name: (body, status, code, field)"""
    return {
        "empty": (b"", 422, "empty_bitstream", None),
        "truncated": (good[: len(good) // 2], 422, "invalid_bitstream", "length"),
        "header_only": (good[:10], 422, "invalid_bitstream", "length"),
        "wrong_magic": (b"PNG!" + good[4:], 422, "invalid_bitstream", "magic"),
        "a_png": (PNG, 422, "invalid_bitstream", "magic"),
        "unknown_version": (_with_field(good, "version", "B", 9), 422, "invalid_bitstream", "version"),
        "absurd_width": (_with_field(good, "width", "H", 65535), 422, "invalid_bitstream", "width"),
        "absurd_area": (_with_field(_with_field(good, "width", "H", 16384), "height", "H", 16384), 422,
                        "invalid_bitstream", "width"),
        "absurd_count": (_with_field(good, "n_gaussians", "I", 2**32 - 1), 422, "invalid_bitstream",
                         "n_gaussians"),
        "count_without_crc_fix": (_with_field(good, "n_gaussians", "I", 5, fix_crc=False), 422,
                                  "invalid_bitstream", None),
        "absurd_section": (_with_field(good, "payload_length", "I", 2**31), 422, "invalid_bitstream",
                           "payload_length"),
        "trailing_bytes": (good + b"\0\0\0\0", 422, "invalid_bitstream", "length"),
        "zeros": (bytes(4096), 422, "invalid_bitstream", "magic"),
    }


BAD_NAMES = ["empty", "truncated", "header_only", "wrong_magic", "a_png", "unknown_version", "absurd_width",
             "absurd_area", "absurd_count", "count_without_crc_fix", "absurd_section", "trailing_bytes", "zeros"]


def test_decode_returns_png_with_header_fields(idle_client, bitstream):
    response = idle_client.post("/decode", content=bitstream, headers={"content-type": "application/octet-stream"})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    header = codec.inspect(bitstream)
    assert response.headers["X-Gsic-Width"] == str(header.width)
    assert response.headers["X-Gsic-Height"] == str(header.height)
    assert response.headers["X-Gsic-Version"] == str(header.version)
    assert response.headers["X-Gsic-N-Gaussians"] == str(header.n_gaussians)
    pixels = np.asarray(Image.open(io.BytesIO(response.content)))
    assert np.array_equal(pixels, codec.decode(bitstream))
    form = idle_client.post("/decode", files={"file": ("a.gsi", bitstream, "application/octet-stream")})
    assert form.status_code == 200 and form.content == response.content
    no_type = idle_client.post("/decode", content=bitstream)
    assert no_type.status_code == 200 and no_type.content == response.content


@pytest.mark.parametrize("name", BAD_NAMES)
def test_decode_rejects_malformed_bitstreams(idle_client, bitstream, name):
    body, status, code, field = _bad_bitstreams(bitstream)[name]
    response = idle_client.post("/decode", content=body, headers={"content-type": "application/octet-stream"})
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["code"] == code
    if field is not None:
        assert problem["field"] == field


def test_decode_size_beyond_server_limit(make_client, bitstream):
    client = make_client(workers=0, max_pixels=1000)  # the bitstream is 64x48
    response = client.post("/decode", content=bitstream)
    assert response.status_code == 413 and response.json()["code"] == "image_too_large"


def test_decode_multipart_without_file(idle_client, bitstream):
    response = idle_client.post("/decode", files={"other": ("a.gsi", bitstream)})
    assert response.status_code == 422 and response.json()["code"] == "missing_file"


def test_decode_random_bit_flips(idle_client, bitstream):
    """Flipped bits with and without a repaired checksum: a PNG or a 422 naming a field, never a 500."""
    rng = random.Random(1234)
    outcomes = {}
    for trial in range(60):
        data = bytearray(bitstream)
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data) - 4)] ^= 1 << rng.randrange(8)
        if trial % 2:  # repair the CRC so the flip reaches the parsers behind it
            data[-4:] = struct.pack("<I", zlib.crc32(bytes(data[:-4])))
        response = idle_client.post("/decode", content=bytes(data))
        assert response.status_code in (200, 413, 422), response.text
        if response.status_code != 200:  # a malformed file, or a flipped count the server will not pay for
            assert response.json()["code"] in ("invalid_bitstream", "decode_too_costly") and response.json()["field"]
        outcomes[response.status_code] = outcomes.get(response.status_code, 0) + 1
    assert outcomes.get(422, 0) > 0
    assert idle_client.post("/decode", content=bitstream).status_code == 200


def test_server_serves_after_the_catalogue(idle_client, bitstream):
    for data, content_type, *_ in REJECTED.values():
        idle_client.post("/encode", files={"file": ("x", data, content_type)})
    for name in BAD_NAMES:
        idle_client.post("/decode", content=_bad_bitstreams(bitstream)[name][0])
    assert idle_client.get("/healthz").status_code == 200
    assert idle_client.post("/decode", content=bitstream).status_code == 200
    assert idle_client.post("/encode", files={"file": ("a.png", PNG)}).status_code == 202
    assert ' status="500"' not in idle_client.get("/metrics").text
