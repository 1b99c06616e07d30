"""Metric collections per problem (MONAI / torchmetrics), named by the dataset's labels."""
