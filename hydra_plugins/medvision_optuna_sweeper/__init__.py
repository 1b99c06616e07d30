"""medvision's Hydra sweeper on Optuna's ask-and-tell API (``hydra/sweeper=optuna``), see :mod:`.optuna_sweeper`."""
