"""The rate study: convergence rates and the Poisson-midpoint speed-up (``python -m labs.rate_sweep``).

``sweep``: the study (its cells, one cell's run, the fits and verdicts, the command line);
``config``: its settings; ``measures``: the metrics it measures chains in, with their noise
floors; ``plotting``: its figure.
"""
