"""Serving with Triton: the repository writer, the python-backend model and the server process."""
