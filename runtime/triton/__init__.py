"""Serving with Triton: the repository writer, the python-backend model, the server process, and gsam serve
(the gateway on the public ports, the supervisor and its probes)."""
