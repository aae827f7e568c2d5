"""Property tests draw the same examples on every run (`derandomize`), so `make test` gives a
teacher or a CI machine the same verdict each time. To let hypothesis search for new failing
examples instead: HYPOTHESIS_PROFILE=explore make test."""

import os

from hypothesis import settings

settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))
