"""Self-configuration: a plan (spacing, normalisation, patch, network, schedule) from a dataset's
fingerprint and a budget (:mod:`medvision.planning.plan`), applied to a run's config with
``plan=auto`` (:mod:`medvision.planning.apply`)."""
