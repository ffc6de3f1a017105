"""Bounds before bytes: encoded images are refused from their header (format, pages, samples, bits, pixels,
strips) before anything is decoded, in the server's decoder (gsam.pixels.codec) and in gsam's file reader."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from gsam.data.imageio import ImageReadError, image_size, read_image
from gsam.pixels.codec import ImageRequestError, decode_image

MAX_PIXELS = 2048 * 2048
# Peak resident growth allowed while a bomb is refused; decoding any of them costs hundreds of MiB or more.
REFUSAL_PEAK_GROWTH_MIB = 48


def zeros_zlib(n: int, unit: int = 1 << 20) -> bytes:
    """A valid zlib stream of n zero bytes, built in milliseconds: one full-flushed block repeated."""
    block = zlib.compressobj(9, zlib.DEFLATED, -15)
    repeated = block.compress(bytes(unit)) + block.flush(zlib.Z_FULL_FLUSH)
    last = zlib.compressobj(9, zlib.DEFLATED, -15)
    tail = last.compress(bytes(n % unit)) + last.flush()
    return b"\x78\xda" + repeated * (n // unit) + tail + struct.pack(">I", ((n % 65521) << 16) | 1)


def tiff(width: int, height: int, samples: int, segment: bytes, *, compression: int = 8, bits: int = 8,
         tile: tuple[int, int] | None = None) -> bytes:
    """A little-endian TIFF of one strip (or one tile) holding `segment`, with the given header fields."""
    count = 12 if tile else 11
    data_at = 8 + 2 + count * 12 + 4
    bits_values = struct.pack(f"<{samples}H", *[bits] * samples) if samples > 2 else b""
    segment_at = data_at + len(bits_values)
    fields = {256: (4, 1, width), 257: (4, 1, height), 258: (3, samples, data_at if samples > 2 else bits),
              259: (3, 1, compression), 262: (3, 1, 1), 277: (3, 1, samples), 284: (3, 1, 1), 339: (3, 1, 1)}
    if tile:
        fields.update({322: (4, 1, tile[1]), 323: (4, 1, tile[0]), 324: (4, 1, segment_at), 325: (4, 1, len(segment))})
    else:
        fields.update({273: (4, 1, segment_at), 278: (4, 1, height), 279: (4, 1, len(segment))})
    entries = b"".join(struct.pack("<HHIHH", tag, kind, n, value, 0) if kind == 3 and n == 1 else
                       struct.pack("<HHII", tag, kind, n, value) for tag, (kind, n, value) in sorted(fields.items()))
    assert len(fields) == count
    return b"II*\x00" + struct.pack("<IH", 8, count) + entries + struct.pack("<I", 0) + bits_values + segment


def png_of_zeros(width: int, height: int) -> bytes:
    """An RGB PNG whose IDAT is a few hundred kB of compressed zero rows."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zeros_zlib(height * (1 + 3 * width))) + \
        chunk(b"IEND", b"")


def _png(array: np.ndarray, **save) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=save.pop("format", "PNG"), **save)
    return buffer.getvalue()


_MEASURE = r"""
import json, resource, sys
from gsam.pixels.codec import ImageRequestError, decode_image
data = open(sys.argv[1], "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    decode_image(data, 32, int(sys.argv[2]))
    message = None
except ImageRequestError as exc:
    message = str(exc)
growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps({"message": message, "growth_mib": growth}))
"""


def _refusal_in_a_fresh_process(path: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(path), str(MAX_PIXELS)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.mark.parametrize("name, make, expected", [
    # 661 kB on the wire, 655 MB decoded: 512 x 512 pixels of 2,500 samples each
    ("samples.tif", lambda: tiff(512, 512, 2500, zeros_zlib(512 * 512 * 2500)),
     "TIFF of 2500 samples x 8 bits per pixel; expected at most 4 samples"),
    # a legal 512 x 512 header whose one Deflate strip inflates to 1 GiB
    ("inflate.tif", lambda: tiff(512, 512, 1, zeros_zlib(1 << 30)),
     "a Deflate TIFF segment inflates beyond the 262144 bytes its header declares"),
    # a 64 x 64 image whose one tile is declared, and filled, as 16384 x 16384
    ("tile.tif", lambda: tiff(64, 64, 1, zeros_zlib(1 << 28), tile=(16384, 16384)),
     "TIFF strips or tiles of 16384x16384 are larger than the image (64x64)"),
    # 8192 x 8192 RGB: refused before Pillow reads its EXIF (which would decode a PNG first)
    ("big.png", lambda: png_of_zeros(8192, 8192), "this model's limit is max_pixels=4194304"),
])
def test_bombs_are_refused_from_the_header_in_bounded_memory(tmp_path, name, make, expected):
    data = make()
    assert len(data) < 1_100_000  # small on the wire
    (tmp_path / name).write_bytes(data)
    result = _refusal_in_a_fresh_process(tmp_path / name)
    assert result["message"] is not None and expected in result["message"], result
    assert result["growth_mib"] < REFUSAL_PEAK_GROWTH_MIB, result


def _refused(data: bytes, *fragments: str) -> str:
    with pytest.raises(ImageRequestError) as caught:
        decode_image(data, 32, MAX_PIXELS)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, message
    assert " at 0x" not in message and "BytesIO" not in message, message
    return message


def test_only_png_jpeg_and_tiff_are_opened():
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    _refused(_png(rgb, format="BMP"), "cannot decode the image bytes: a BMP file; only PNG, JPEG and TIFF are accepted")
    _refused(_png(rgb, format="GIF"), "cannot decode the image bytes: a GIF file; only PNG, JPEG and TIFF")
    _refused(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 48\n", "a PostScript/EPS file; only")
    _refused(b"not an image at all", "cannot decode the image bytes: not a PNG, JPEG or TIFF image (first bytes "
                                     "6e6f7420616e2069)")
    _refused(b"", "not a PNG, JPEG or TIFF image (first bytes none: empty)")
    for fmt in ("PNG", "JPEG", "TIFF"):
        assert decode_image(_png(rgb, format=fmt)).shape == (48, 64, 3)


def test_damaged_bytes_name_the_input_not_a_python_object():
    rgb = np.zeros((48, 64, 3), np.uint8)
    _refused(_png(rgb)[:60], "cannot decode the image bytes")
    _refused(b"\xff\xd8\xff" + bytes(40), "cannot decode the image bytes")
    _refused(_png(rgb, format="TIFF")[:30], "cannot decode the image bytes")
    _refused(b"II*\x00", "cannot decode the image bytes")  # cut inside its first header: tifffile's struct.error


def test_one_image_per_request():
    frames = [Image.fromarray(np.full((48, 64, 3), v, np.uint8)) for v in (10, 200)]
    animated = io.BytesIO()
    frames[0].save(animated, format="PNG", save_all=True, append_images=frames[1:])
    _refused(animated.getvalue(), "PNG holds 2 frames (an animation); one image per request")
    pages = io.BytesIO()
    with tifffile.TiffWriter(pages) as writer:
        for frame in frames:
            writer.write(np.asarray(frame), photometric="rgb")
    _refused(pages.getvalue(), "TIFF holds more than one page or slice; one image per request")
    # an MPO (a phone's or stereo camera's JPEG with extra images) is its primary image
    mpo = io.BytesIO()
    frames[0].save(mpo, format="MPO", save_all=True, append_images=frames[1:])
    with Image.open(io.BytesIO(mpo.getvalue())) as opened:
        assert opened.format == "MPO" and opened.n_frames == 2
    assert abs(int(decode_image(mpo.getvalue()).mean()) - 10) <= 2
    with tempfile.TemporaryDirectory() as folder:  # gsam's file reader takes it the same way
        (Path(folder) / "phone.jpg").write_bytes(mpo.getvalue())
        assert abs(int(read_image(Path(folder) / "phone.jpg").mean()) - 10) <= 2


def test_tiff_samples_bits_and_compression_outside_the_list_are_refused():
    _refused(tifffile_bytes(np.zeros((40, 40), np.float32)), "TIFF of 1 samples x 32 bits per pixel")
    _refused(tifffile_bytes(np.zeros((40, 40, 5), np.uint8), planarconfig="contig"), "TIFF of 5 samples")
    _refused(tiff(64, 64, 1, bytes(4096), compression=5), "TIFF compression 5 is not accepted")
    _refused(tiff(64, 64, 1, bytes(4096), compression=32773), "TIFF compression 32773 is not accepted")
    gray16 = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    assert decode_image(tifffile_bytes(gray16, compression="zlib")).shape == (64, 64, 3)
    planar = np.zeros((3, 40, 48), np.uint8)
    assert decode_image(tifffile_bytes(planar, photometric="rgb", planarconfig="separate")).shape == (40, 48, 3)


def tifffile_bytes(array: np.ndarray, **write) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, **write)
    return buffer.getvalue()


def test_gsam_predicts_reader_applies_the_same_format_list(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    disguised = tmp_path / "photo.png"
    disguised.write_bytes(_png(rgb, format="BMP"))
    eps = tmp_path / "scan.jpg"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 48\n")
    pages = tmp_path / "pages.tif"
    tifffile.imwrite(pages, np.zeros((3, 40, 56, 3), np.uint8), photometric="rgb")  # three RGB pages
    for path, fragment in ((disguised, "a BMP file; only PNG, JPEG and TIFF are accepted"),
                           (eps, "a PostScript/EPS file"), (pages, "one image per request")):
        for reader in (read_image, image_size):
            with pytest.raises(ImageReadError, match=f"^{path}: cannot read image \\(.*{fragment}"):
                reader(path)
    # a PNG named .tif is read by what it is; float TIFFs (the importers' scans) stay readable here
    (tmp_path / "named.tif").write_bytes(_png(rgb))
    assert np.array_equal(read_image(tmp_path / "named.tif"), rgb) and image_size(tmp_path / "named.tif") == (40, 56)
    tifffile.imwrite(tmp_path / "scan.tif", np.full((40, 56), 0.5, np.float32))
    assert read_image(tmp_path / "scan.tif").shape == (40, 56, 3)
