"""`gsam predict`: masks and overlays for images, through any backend."""

from __future__ import annotations

from pathlib import Path

import click

from gsam.runtime.backends import backend_names

from .options import amp_option, device_option, out_option, retired, triton_model_option


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
@click.option("--tile-above", type=click.IntRange(1), metavar="PIXELS", help="Tile images above this many pixels "
              "automatically [default: what half the free memory holds for this model; said in the log].")
@click.option("--max-image-pixels", type=click.IntRange(1), help="Raise the decompression-bomb limit for PNG/JPEG, "
              "which are decoded whole [default: Pillow's, 89478485]. TIFFs are read lazily and are not limited.")
@click.option("--timeout", type=click.FloatRange(min=1), default=600.0, show_default=True,
              help="Triton backends: seconds to wait for one request (a server tiling a 36-megapixel image on a "
                   "CPU takes minutes).")
@retired("--max-pixels", "was renamed --tile-above (--max-pixels is a served request's bound)")
def predict(paths, out, backend, url, triton_model, device, amp, alpha, tile, overlap, tile_above,
            max_image_pixels, timeout) -> None:
    """Segment images at their native size: a class-id mask and a colour overlay per image.

    Images above --tile-above (or all, with --tile) run tile by tile and are read and written band
    by band, so memory depends on the tile, not the image; masks above 16.8 megapixels are written
    as tiled TIFFs (MASK.tif), smaller ones as PNG.

    \b
    Local model:  gsam predict RUN_OR_MODEL IMAGES_OR_DIRS... --out DIR
    Triton:       gsam predict --backend triton-grpc --url localhost:8001 IMAGES_OR_DIRS... --out DIR
    Image bytes:  gsam predict --backend triton-image --url localhost:8000 IMAGES_OR_DIRS... --out DIR
    forced bf16:  gsam predict runs/demo photos/ --out masks/ --amp bf16
    Huge images:  gsam predict model.onnx scan.tif --out DIR --tile 1024 --overlap 128
    """
    from tqdm import tqdm

    from gsam.runtime.predictor import load

    from ..errors import GSAMError

    if backend.startswith("triton") and not url:
        raise GSAMError(f"--backend {backend} needs --url, e.g. localhost:8000 (HTTP) or localhost:8001 (gRPC)")
    if not backend.startswith("triton") and len(paths) < 2:
        raise GSAMError("give the model (run directory, .pt, .onnx or .plan) and then one or more images or folders")
    target, image_args = (url, list(paths)) if backend.startswith("triton") else (paths[0], list(paths[1:]))
    predictor = load(target, None if backend == "auto" else backend, triton_model=triton_model, device=device, amp=amp,
                     timeout=timeout, tile=tile, overlap=overlap, tile_above=tile_above,
                     max_image_pixels=max_image_pixels, alpha=alpha, command="gsam predict")
    for note in predictor.notes:
        click.echo(note, err=True)
    with predictor:
        images = collect_images(image_args)
        for path in tqdm(images, desc=f"predict ({predictor.name})", unit="img"):
            note = predictor.write(path, out)
            if note:
                tqdm.write(note)
    click.echo(f"wrote {len(images)} masks to {Path(out) / 'masks'} and overlays to {Path(out) / 'overlays'}")
