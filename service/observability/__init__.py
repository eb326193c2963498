"""What the server tells its operators: Prometheus metrics, label-free model signals, structured
logs and request ids.

Imports no transport.
"""
