"""The code Triton's python backend loads: python_model.py (model.py of gsam_python and gsam_image) and
compute.py. It imports nothing of gsam but gsam.pixels, which travels beside it as gsam_pixels."""
