"""Property-based tests (hypothesis) of the runtime: pre/post-processing, the onnxruntime backend,
image decoding of random bytes, and random requests to a real Triton server."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gsam.data.imageio import ImageReadError, read_image
from gsam.data.palette import default_palette
from gsam.errors import GSAMError
from gsam.model.segmenter import to_model_input
from gsam.pixels.masks import logits_to_mask, overlay
from gsam.runtime.backends import load_backend

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def ort_backend(tiny_onnx):
    return load_backend("onnxruntime", tiny_onnx), tiny_onnx


@FAST
@given(h=st.integers(1, 300), w=st.integers(1, 300), batch=st.integers(1, 3), classes=st.integers(1, 6),
       seed=st.integers(0, 2**16))
def test_processing_keeps_sizes_and_value_ranges(h, w, batch, classes, seed):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (batch, h, w, 3), dtype=np.uint8)
    tensor = to_model_input(list(images))
    assert tensor.shape == (batch, 3, h, w) and tensor.dtype == np.float32
    assert tensor.min() >= 0 and tensor.max() <= 255
    np.testing.assert_array_equal(tensor[0].transpose(1, 2, 0), images[0])
    logits = rng.normal(size=(batch, classes, h, w)).astype(np.float32)
    mask = logits_to_mask(logits)
    assert mask.shape == (batch, h, w) and mask.dtype == np.int32
    assert mask.min() >= 0 and mask.max() <= max(classes - 1, 1)
    blended = overlay(images[0], mask[0], np.array(default_palette(max(classes, 2)), dtype=np.uint8))
    assert blended.shape == (h, w, 3) and blended.dtype == np.uint8
    np.testing.assert_array_equal(blended[mask[0] == 0], images[0][mask[0] == 0])


@FAST
@given(h=st.integers(32, 160), w=st.integers(32, 160), batch=st.integers(1, 2),
       dtype=st.sampled_from([np.float32, np.float64, np.uint8, np.int32]))
def test_onnxruntime_backend_any_size_batch_and_dtype(ort_backend, h, w, batch, dtype):
    backend, _ = ort_backend
    images = np.random.default_rng(h * w).integers(0, 256, (batch, 3, h, w)).astype(dtype)
    out = backend(images)
    assert out["logits"].shape == (batch, 3, h, w) and out["mask"].shape == (batch, h, w)
    assert np.isfinite(out["logits"]).all()
    np.testing.assert_array_equal(out["mask"], out["logits"].argmax(axis=1))
    np.testing.assert_allclose(out["logits"], backend(images.astype(np.float32))["logits"], rtol=0, atol=0)


@FAST
@given(h=st.integers(1, 31), w=st.integers(1, 300))
def test_onnxruntime_backend_refuses_sizes_below_the_minimum(ort_backend, h, w):
    backend, _ = ort_backend
    with pytest.raises(GSAMError, match="below the model's minimum side of 32"):
        backend(np.zeros((1, 3, h, w), np.float32))


@FAST
@given(data=st.binary(max_size=2048), suffix=st.sampled_from([".png", ".jpg", ".tif"]))
def test_random_bytes_as_an_image_file_fail_cleanly(tmp_path, data, suffix):
    path = tmp_path / f"random{suffix}"
    path.write_bytes(data)
    try:
        image = read_image(path)
    except ImageReadError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
    else:  # a few byte strings are valid images; then they must decode to RGB uint8
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8


@FAST
@given(seed=st.integers(0, 2**16), h=st.integers(1, 64), w=st.integers(1, 64))
def test_valid_png_round_trips(tmp_path, seed, h, w):
    from PIL import Image

    array = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    (tmp_path / "x.png").write_bytes(buffer.getvalue())
    np.testing.assert_array_equal(read_image(tmp_path / "x.png"), array)
