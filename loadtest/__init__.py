"""Load tests (locust scenarios) and the one-command benchmark (``python -m loadtest.bench``)."""
