"""The training half of dlwp-serving: the book's four recipes, one loop, versioned artifacts.

Shares `service.model` (artifacts, preprocessing) with the server and talks to a running one
through `service.client`; never imports the server itself (transports, process, data plane,
repository) or a web or gRPC framework (`lint-imports` checks it).
"""
