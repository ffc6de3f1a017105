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


def open_segmenter(backend: str, paths: tuple[str, ...], url: str | None, *, triton_model: str, device: str,
                   amp: str = "auto", timeout: float = 600.0):
    """(segmenter, image paths): local backends take the model as the first path, Triton ones a URL."""
    from gsam.runtime.backends import guess_backend, load_backend

    from ..errors import GSAMError

    if backend.startswith("triton"):
        if not url:
            raise GSAMError(f"--backend {backend} needs --url, e.g. localhost:8000 (HTTP) or localhost:8001 (gRPC)")
        if backend == "triton-image" and triton_model == "gsam_python":
            triton_model = "gsam_image"  # the default names the tensor model; this backend needs the image one
        return load_backend(backend, url, model=triton_model, timeout=timeout), list(paths)
    if len(paths) < 2:
        raise GSAMError("give the model (run directory, .pt, .onnx or .plan) and then one or more images or folders")
    kind = guess_backend(paths[0]) if backend == "auto" else backend
    if amp not in ("off", "auto") and kind != "torch":
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

    segmenter, image_args = open_segmenter(backend, paths, url, triton_model=triton_model, device=device, amp=amp,
                                           timeout=timeout)
    if hasattr(segmenter, "amp_choice"):
        click.echo(segmenter.amp_choice.line(), err=True)
        if segmenter.amp_choice.warning:
            click.echo(segmenter.amp_choice.warning, err=True)
    try:
        images = collect_images(image_args)
        writer = _MaskWriter(segmenter, Path(out), alpha, max_image_pixels, _tiling(segmenter, tile, overlap, tile_above))
        for path in tqdm(images, desc=f"predict ({segmenter.name})", unit="img"):
            note = writer.write(path)
            if note:
                tqdm.write(note)
    finally:
        segmenter.close()
    click.echo(f"wrote {len(images)} masks to {writer.out / 'masks'} and overlays to {writer.out / 'overlays'}")


def _tiling(segmenter, tile: int | None, overlap: int, tile_above: int | None):
    """(tiled segmenter, pixels above which images are tiled; 0 = every image): --tile, --tile-above, or
    the threshold that half the free memory allows for this model."""
    from gsam.runtime.backends.tiled import TiledSegmenter
    from gsam.runtime.memory import default_tile, default_tile_above

    if tile_above is None and tile is None:
        tile_above, how = default_tile_above(segmenter.facts.model_name)
        click.echo(f"--tile-above {tile_above} ({how}); larger images are tiled", err=True)
    tile_side = tile or default_tile(tile_above, segmenter.facts.min_size)
    if not tile and overlap >= tile_side:  # automatic tiles smaller than the default overlap
        overlap = tile_side // 4
    return TiledSegmenter(segmenter, tile_side, overlap), (0 if tile else tile_above)


class _MaskWriter:
    """One image file -> OUT/masks/NAME.png (or .tif) and OUT/overlays/NAME.png: sent as encoded bytes
    to a backend that takes them, in tiles above the threshold, else whole."""

    def __init__(self, segmenter, out: Path, alpha: float, max_image_pixels: int | None, tiling) -> None:
        from gsam.runtime.backends.processing import palette_for

        from ..errors import GSAMError

        self.segmenter, self.out, self.alpha, self.max_image_pixels = segmenter, out, alpha, max_image_pixels
        self.tiled, self.tile_above = tiling
        self.palette = palette_for(segmenter.facts.num_classes, segmenter.facts.palette)
        self.used: set[str] = set()
        try:
            for sub in ("masks", "overlays"):
                (out / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise GSAMError(f"{out}: cannot create the output folder ({exc.strerror or exc})") from None

    def write(self, path: Path) -> str | None:
        """Write one image's mask and overlay; returns a note for the log, if any."""
        from gsam.runtime.large_image import predict_tiled

        from ..data.imageio import image_size
        from ..errors import GSAMError

        height, width = image_size(path, self.max_image_pixels)
        min_size = self.segmenter.facts.min_size
        if min(height, width) < min_size:
            raise GSAMError(f"{path}: image {height}x{width} is below the model's minimum side of {min_size} pixels")
        name = path.stem
        while name in self.used:
            name += "_"
        self.used.add(name)
        if self.segmenter.takes_encoded:  # the file's own bytes go on the wire; the server bounds them
            return self._write_encoded(path, name)
        if height * width > self.tile_above:
            predict_tiled(self.tiled, path, self.out / "masks" / name, self.out / "overlays" / name, self.palette,
                          alpha=self.alpha, max_image_pixels=self.max_image_pixels)
            if self.tile_above:
                return (f"{path}: {height}x{width} is above --tile-above {self.tile_above}: tiles of "
                        f"{self.tiled.tiles.size} overlapping by {self.tiled.tiles.overlap}")
            return None
        from gsam.runtime.backends.processing import to_model_input

        from ..data.imageio import read_image

        image = read_image(path, self.max_image_pixels)
        self._save(name, image, self.segmenter(to_model_input(image))["mask"][0])
        return None

    def _write_encoded(self, path: Path, name: str) -> None:
        from ..pixels.codec import decode_image

        data = path.read_bytes()
        mask = self.segmenter.segment_encoded(data)
        self._save(name, decode_image(data), mask)  # the image as the server saw it (EXIF orientation applied)

    def _save(self, name: str, image, mask) -> None:
        from gsam.pixels.masks import overlay
        from gsam.runtime.backends.processing import save_png

        save_png(mask, self.out / "masks" / f"{name}.png")
        save_png(overlay(image, mask, self.palette, self.alpha), self.out / "overlays" / f"{name}.png")
