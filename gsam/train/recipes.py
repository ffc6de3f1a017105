"""The paper's per-dataset training settings as named presets (`gsam train --recipe NAME`).

Each recipe holds what the reference G-SAM code sets per dataset: the resize it applies to every
image before the random crop (training) and before inference (validation/test), the crop size, the
number of classes, the ignore index and the kind of loss (binary: one output channel with
BCE-with-logits; multi-class: cross-entropy). Optimizer, learning rate, epochs and batch size are
the same for all seven datasets and are already gsam's defaults (Adam 1e-4, cosine, 200, 8).

A recipe is a set of defaults: every setting given explicitly (a flag or a --config key) wins.
Datasets written by `gsam data import --from g-sam` carry the class names and ignore index the
recipe expects; `check_dataset_fits` says in one line when a dataset does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from ..errors import GSAMError


@dataclass(frozen=True)
class Recipe:
    name: str
    crop: tuple[int, int]
    resize: tuple[int, int]
    num_classes: int  # classes of the dataset, background included
    ignore_index: int  # -1: nothing ignored
    binary: bool  # one output channel with BCE-with-logits, else cross-entropy over num_classes

    @property
    def output_channels(self) -> int:
        return 1 if self.binary else self.num_classes

    def settings(self) -> dict[str, Any]:
        """The TrainConfig fields this recipe sets."""
        return {"crop": self.crop, "resize": self.resize, "num_classes": self.output_channels}


RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("isbi2012", crop=(128, 128), resize=(256, 256), num_classes=2, ignore_index=-1, binary=True),
    Recipe("camvid", crop=(256, 256), resize=(360, 480), num_classes=11, ignore_index=255, binary=False),
    Recipe("m-building", crop=(512, 512), resize=(1024, 1024), num_classes=2, ignore_index=-1, binary=True),
    Recipe("kvasir", crop=(224, 224), resize=(224, 224), num_classes=2, ignore_index=-1, binary=True),
    Recipe("synapse", crop=(224, 224), resize=(224, 224), num_classes=9, ignore_index=255, binary=False),
    Recipe("cityscapes", crop=(512, 512), resize=(512, 1024), num_classes=19, ignore_index=255, binary=False),
    Recipe("trans10k", crop=(256, 256), resize=(520, 520), num_classes=3, ignore_index=255, binary=False),
)}


def get_recipe(name: str) -> Recipe:
    key = name.lower()
    if key not in RECIPES:
        raise GSAMError(f"--recipe {name!r}: unknown recipe; expected one of {', '.join(RECIPES)}")
    return RECIPES[key]


def apply_recipe(settings: dict[str, Any], explicit: Iterable[str]) -> dict[str, Any]:
    """`settings` (TrainConfig fields) with the recipe named in settings['recipe'] filled in.

    Fields named in `explicit` (given as a flag or in a --config file) keep their value; every other
    field the recipe sets takes the recipe's value. Without a recipe, settings come back unchanged.
    """
    name = settings.get("recipe")
    if not name:
        return dict(settings)
    recipe = get_recipe(name)
    explicit = set(explicit)
    merged = dict(settings, recipe=recipe.name)
    for key, value in recipe.settings().items():
        if key not in explicit:
            merged[key] = value
    return merged


def check_dataset_fits(recipe_name: str, names: tuple[str, ...], ignore_index: int, data: str) -> None:
    """A recipe trains a dataset of its class count and ignore index; anything else is an error."""
    recipe = get_recipe(recipe_name)
    if len(names) != recipe.num_classes:
        raise GSAMError(f"{data}/classes.yaml: {len(names)} classes, but recipe {recipe.name} expects "
                        f"{recipe.num_classes} (import the data with `gsam data import --from g-sam --dataset "
                        f"{recipe.name}`)")
    if ignore_index != recipe.ignore_index and not (recipe.binary and ignore_index in (-1, 255)):
        raise GSAMError(f"{data}/classes.yaml: ignore_index {ignore_index}, but recipe {recipe.name} "
                        f"expects {recipe.ignore_index}")
