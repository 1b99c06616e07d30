"""Console scripts: one thin module per command (parse, one library call, exit code).

Every ``medvision-*`` script of ``pyproject.toml`` points here, and nothing imports this package:
the library lives in the layers below (``train``, ``evaluate``, ``inference``, ``workflows``, ...).
Imports of torch, Lightning and MONAI stay inside the functions, so ``--help`` answers fast.
"""
