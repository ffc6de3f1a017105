"""`gsam predict`: masks and overlays for images, through any backend."""

from __future__ import annotations

from pathlib import Path

import click

from ..runtime.backends import backend_names
from .options import amp_option, device_option, out_option, triton_model_option


def collect_images(paths: list[str]) -> list[Path]:
    """Files as given; folders expanded (recursively) to their images, sorted."""
    from ..data.imageio import IMAGE_SUFFIXES
    from ..errors import GSAMError

    images: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise GSAMError(f"{path}: folder holds no .png/.jpg/.tif images")
            images.extend(found)
        elif path.is_file():
            images.append(path)
        else:
            raise GSAMError(f"{path}: no such image file or folder")
    return images


def open_segmenter(backend: str, paths: tuple[str, ...], url: str | None, triton_model: str, device: str,
                   amp: str = "off", timeout: float = 600.0):
    """(segmenter, image paths): local backends take the model as the first path, Triton ones a URL."""
    from ..errors import GSAMError
    from ..runtime.backends import guess_backend, load_backend

    if backend.startswith("triton"):
        if not url:
            raise GSAMError(f"--backend {backend} needs --url, e.g. localhost:8000 (HTTP) or localhost:8001 (gRPC)")
        if backend == "triton-image" and triton_model == "gsam_python":
            triton_model = "gsam_image"  # the default names the tensor model; this backend needs the image one
        return load_backend(backend, url, model=triton_model, timeout=timeout), list(paths)
    if len(paths) < 2:
        raise GSAMError("give the model (run directory, .pt, .onnx or .plan) and then one or more images or folders")
    kind = guess_backend(paths[0]) if backend == "auto" else backend
    if amp != "off" and kind != "torch":
        raise GSAMError(f"--amp {amp} applies to the torch backend only (a run directory or .pt); "
                        f"{paths[0]} runs on {kind}")
    options = {"device": device, "amp": amp} if kind == "torch" else {}
    return load_backend(kind, paths[0], **options), list(paths[1:])


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@out_option("Writes OUT/masks and OUT/overlays.", type=click.Path(file_okay=False))
@click.option("--backend", type=click.Choice(["auto", *backend_names()]), default="auto", show_default=True,
              help="auto picks by the model file: run dir/.pt -> torch, .onnx -> onnxruntime, .plan -> tensorrt.")
@click.option("--url", help="Triton server for triton-http / triton-grpc / triton-image, e.g. localhost:8001 "
                            "(triton-image: the HTTP port, e.g. localhost:8000).")
@triton_model_option()
@device_option()
@amp_option()
@click.option("--alpha", type=click.FloatRange(0, 1), default=0.5, show_default=True, help="Overlay opacity.")
@click.option("--tile", type=click.IntRange(1), help="Run every image in overlapping TILE x TILE tiles, logits "
              "blended across the seams (an image that fits in one tile gets exactly the whole-image result).")
@click.option("--overlap", type=click.IntRange(0), default=128, show_default=True,
              help="Pixels neighbouring tiles share; must be smaller than the tile.")
@click.option("--max-pixels", type=click.IntRange(1), help="Tile images above this many pixels automatically "
              "[default: what half the free memory holds for this model; said in the log].")
@click.option("--max-image-pixels", type=click.IntRange(1), help="Raise the decompression-bomb limit for PNG/JPEG, "
              "which are decoded whole [default: Pillow's, 89478485]. TIFFs are read lazily and are not limited.")
@click.option("--timeout", type=click.FloatRange(min=1), default=600.0, show_default=True,
              help="Triton backends: seconds to wait for one request (a server tiling a 36-megapixel image on a "
                   "CPU takes minutes).")
def predict(paths, out, backend, url, triton_model, device, amp, alpha, tile, overlap, max_pixels,
            max_image_pixels, timeout) -> None:
    """Segment images at their native size: a class-id mask and a colour overlay per image.

    Images above --max-pixels (or all, with --tile) run tile by tile and are read and written band
    by band, so memory depends on the tile, not the image; masks above 16.8 megapixels are written
    as tiled TIFFs (MASK.tif), smaller ones as PNG.

    \b
    Local model:  gsam predict RUN_OR_MODEL IMAGES_OR_DIRS... --out DIR
    Triton:       gsam predict --backend triton-grpc --url localhost:8001 IMAGES_OR_DIRS... --out DIR
    Image bytes:  gsam predict --backend triton-image --url localhost:8000 IMAGES_OR_DIRS... --out DIR
    bf16 on CPU:  gsam predict runs/demo photos/ --out masks/ --amp bf16
    Huge images:  gsam predict model.onnx scan.tif --out DIR --tile 1024 --overlap 128
    """
    from tqdm import tqdm

    from ..data.imageio import image_size, read_image
    from ..errors import GSAMError
    from ..runtime.backends.budget import default_max_pixels, default_tile
    from ..runtime.backends.processing import overlay, palette_for, save_png, to_model_input
    from ..runtime.backends.tiled import TiledSegmenter
    from ..runtime.large_image import predict_tiled

    segmenter, image_args = open_segmenter(backend, paths, url, triton_model, device, amp, timeout)
    images = collect_images(image_args)
    palette = palette_for(segmenter.facts.num_classes, segmenter.facts.palette)
    if max_pixels is None and tile is None:
        max_pixels, how = default_max_pixels(segmenter.facts.model_name)
        click.echo(f"--max-pixels {max_pixels} ({how}); larger images are tiled", err=True)
    tile_side = tile or default_tile(max_pixels, segmenter.facts.min_size)
    if not tile and overlap >= tile_side:  # automatic tiles smaller than the default overlap
        overlap = tile_side // 4
    tiled = TiledSegmenter(segmenter, tile_side, overlap)
    out = Path(out)
    try:
        for sub in ("masks", "overlays"):
            (out / sub).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GSAMError(f"{out}: cannot create the output folder ({exc.strerror or exc})") from None
    used: set[str] = set()
    try:
        for path in tqdm(images, desc=f"predict ({segmenter.name})", unit="img"):
            height, width = image_size(path, max_image_pixels)
            if min(height, width) < segmenter.facts.min_size:
                raise GSAMError(f"{path}: image {height}x{width} is below the model's minimum side "
                                f"of {segmenter.facts.min_size} pixels")
            name = path.stem
            while name in used:
                name += "_"
            used.add(name)
            if hasattr(segmenter, "segment_bytes"):  # the file's own bytes go on the wire; the server bounds them
                from ..runtime.triton.image_codec import decode_image

                data = path.read_bytes()
                mask = segmenter.segment_bytes(data)
                image = decode_image(data)  # as the server saw it (EXIF orientation applied), for the overlay
                save_png(mask, out / "masks" / f"{name}.png")
                save_png(overlay(image, mask, palette, alpha), out / "overlays" / f"{name}.png")
                continue
            if tile or height * width > max_pixels:
                if not tile:
                    tqdm.write(f"{path}: {height}x{width} is above --max-pixels {max_pixels}: "
                               f"tiles of {tile_side} overlapping by {overlap}")
                predict_tiled(tiled, path, out / "masks" / name, out / "overlays" / name, palette, alpha,
                              max_image_pixels)
                continue
            image = read_image(path, max_image_pixels)
            mask = segmenter(to_model_input(image))["mask"][0]
            save_png(mask, out / "masks" / f"{name}.png")
            save_png(overlay(image, mask, palette, alpha), out / "overlays" / f"{name}.png")
    finally:
        segmenter.close()
    click.echo(f"wrote {len(images)} masks to {out / 'masks'} and overlays to {out / 'overlays'}")
