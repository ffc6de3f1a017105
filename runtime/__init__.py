"""Running models (backends), serving them (triton) and timing them (bench): import as gsam.runtime."""
