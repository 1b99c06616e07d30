"""Hydra config tree of medvision (shipped as package data ``medvision.conf``)."""
