"""Importers of public dataset layouts into gsam's DATA/{split}/{images,masks} + classes.yaml."""

from .registry import FORMATS, IMPORTERS, import_dataset

__all__ = ["FORMATS", "IMPORTERS", "import_dataset"]
