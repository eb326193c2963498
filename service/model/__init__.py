"""One model version on disk and in memory: artifacts (manifest, checksums), the runtime seam
(TensorFlow or JAX), codecs, the preprocessing shared with training, and the batcher that runs a
served version's rows.

The bottom layer: imports no other subpackage of `service` (the repository, observability, the
data plane, the protocols, the transports) and no web or gRPC framework; training imports it too.
"""
