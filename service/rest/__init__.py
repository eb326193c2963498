"""The HTTP transport: the app factory, routes (task endpoints, V2, TF Serving, repository,
explanations, the page), request middleware and the fast path for inference routes.

A transport: never imports `service.grpc` (nor it this one); another front joins through
`app.create_app(fronts=...)`, wired in `service.process.app`. May import every layer below.
"""
