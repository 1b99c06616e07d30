"""medvision: a PyTorch Lightning + MONAI + Hydra framework for deep learning on medical images.

Importing this package is cheap: the heavy stack (torch, Lightning, MONAI) is imported by the
submodules that need it, so the command-line entry points answer ``--help`` quickly.
"""

from __future__ import annotations

__version__ = "0.1.0"
