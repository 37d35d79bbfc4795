import os

from hypothesis import HealthCheck, settings

# "ci" keeps the suite fast; run `HYPOTHESIS_PROFILE=deep pytest` for a longer search locally.
settings.register_profile("ci", max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("deep", max_examples=500, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
