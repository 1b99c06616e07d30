"""End-to-end pipelines above ``medvision.train.run``: GAN augmentation, cross-validation reports."""
