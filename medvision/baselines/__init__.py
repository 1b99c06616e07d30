"""Reference numbers a run is read against: trivial baselines and (later) published results."""
