"""The serving container: the Triton release table (releases.py), the image recipe with pinned
requirements (recipe.py) and gsam's wheel inside it (wheel.py)."""
