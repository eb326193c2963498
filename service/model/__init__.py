"""One model version on disk and in memory: artifacts (manifest, checksums), the runtime seam
(TensorFlow or JAX), codecs, and the preprocessing shared with training.

Imports nothing from the transports, the repository or the data plane.
"""
