"""What the server tells its operators: Prometheus metrics, label-free model signals, structured
logs and request ids.

Below the repository and the data plane, above `service.model`: imports no transport, data
plane, protocol or repository module, and no web or gRPC framework.
"""
