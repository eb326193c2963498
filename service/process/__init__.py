"""The serving process: running the HTTP server, workers, the drain on SIGTERM, and the
connection-level protections (deadlines, connection cap).
"""
