"""GAN-based augmentation: synthetic sample stores and their mixing into training."""
