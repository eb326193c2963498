"""The HTTP transport: the app factory, routes (task endpoints, V2, TF Serving, repository,
explanations, the page), request middleware and the fast path for inference routes.

Never imports `service.grpc`.
"""
