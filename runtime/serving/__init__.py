"""What runs in front of and beside tritonserver for `gsam serve`: the gateway (HTTP and gRPC), its
admission and parsing, the supervisor that probes each model, and the tritonserver process itself."""
