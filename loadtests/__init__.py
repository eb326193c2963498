"""Load tests (locust) and the benchmark (`make bench`)."""
