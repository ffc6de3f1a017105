"""`gsam bench`: the timing harness, the runner that drives every backend, and the SAM-1024 baseline."""
