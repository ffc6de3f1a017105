"""gsam: fine-tune Generalized SAM and serve it at any image size."""

__version__ = "0.1.0"
