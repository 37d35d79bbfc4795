"""The diffusion study: DDPM, DDIM, DPM-Solver++ and Poisson-midpoint DDPM on exact-score
mixtures (``python -m labs.diffusion_sweep``).

``sweep``: the study and its settings; ``plotting``: its figures.
"""
