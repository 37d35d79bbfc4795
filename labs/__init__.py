"""Experiments with a command line: ``python -m labs.rate_sweep``."""
