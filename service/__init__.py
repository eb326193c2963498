"""The HTTP serving half of dlwp-serving: artifacts in, predictions out."""
