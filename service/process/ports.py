"""Is a port free? Checked by `dlwp serve` before any worker starts, without importing grpc."""

from __future__ import annotations

import socket


def in_use(host: str, port: int, reason: str) -> ValueError:
    return ValueError(
        f"gRPC port {port} on {host} is already in use ({reason}): stop the process holding "
        "it, or choose another with --grpc-port / DLWP_GRPC_PORT (0 turns gRPC off)"
    )


def check_port_free(host: str, port: int) -> None:
    """Raise ValueError if any process already listens on (host, port)."""
    for family, kind, proto, _, where in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        with socket.socket(family, kind, proto) as probe:
            # Without SO_REUSEPORT, a bind fails while anyone listens there (grpcio included);
            # SO_REUSEADDR only ignores closed connections of an earlier run.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(where)
            except OSError as error:
                raise in_use(host, port, error.strerror or str(error)) from None
