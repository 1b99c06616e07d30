"""Using trained models: prediction in the original space, export, generation from a GAN."""
