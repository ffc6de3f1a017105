"""Pixel helpers that gsam and the Triton python models share: numpy, Pillow and tifffile only.

Nothing here imports from gsam, and the modules import each other relatively, so `gsam triton
build` copies this package beside each python-backend model (as `gsam_pixels/`) and the server
runs the very code `gsam predict` runs:

    convert  any decoded image -> uint8 RGB
    masks    logits -> class-id masks, colour overlays
    codec    encoded bytes -> bounded, checked pixels; masks -> PNG bytes
    tiling   overlapping tiles with blended logits, band by band
"""
