"""Inference backends, pre/post-processing, Triton and benchmarks (import as gsam.runtime)."""
