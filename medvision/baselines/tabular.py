"""Trivial baselines a fusion classifier must clear: logistic regression and a small net on one input.

Read beside the image + clinical network (``medvision.callbacks.clinical.ClinicalBaselines``):
scikit-learn's ``LogisticRegression`` on the clinical vector or on average-pooled image pixels
(standardised first), and a torch network (the fusion classifier's clinical MLP alone) trained
full-batch on the training split. Each gives class probabilities for the test cases; the caller
scores them with the same metric code as the network.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn


def logistic_regression(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, num_classes: int, seed: int = 0, c: float = 1.0
) -> np.ndarray:
    """Class probabilities (N_test, num_classes) of a standardised L2 logistic regression (scikit-learn).

    Args:
        x_train: (N, F) training features.
        y_train: (N,) class indices.
        x_test: (M, F) features to score.
        num_classes: number of classes (columns of the result; a class absent from training gets 0).
        seed: the solver's random state.
        c: inverse regularisation strength.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    out = np.zeros((len(x_test), num_classes), dtype=np.float64)
    classes = np.unique(y_train)
    if len(classes) < 2:  # nothing to learn: the one class seen
        out[:, int(classes[0])] = 1.0
        return out
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000, random_state=seed))
    model.fit(x_train, y_train)
    out[:, [int(k) for k in model.classes_]] = model.predict_proba(x_test)
    return out


def pooled_pixels(images: Sequence[np.ndarray], side: int = 16) -> np.ndarray:
    """Images (C, *spatial) -> (N, C * side^d) vectors, average-pooled to at most ``side`` per axis."""
    rows = []
    for image in images:
        x = torch.as_tensor(np.asarray(image, dtype=np.float32))[None]
        dims = x.ndim - 2
        size = [min(side, s) for s in x.shape[2:]]
        pool = nn.functional.adaptive_avg_pool2d if dims == 2 else nn.functional.adaptive_avg_pool3d
        rows.append(pool(x, size).reshape(-1).numpy())
    return np.stack(rows)


def train_full_batch(
    make_net: Callable[[], nn.Module],
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    steps: int = 300,
    lr: float = 1e-2,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> nn.Module:
    """Build a network (features -> logits) and train it with full-batch Adam and cross-entropy,
    keeping the step of lowest validation loss.

    Initialisation and dropout are seeded with ``seed``; the caller's random state is left as it
    was (``torch.random.fork_rng``).

    Args:
        make_net: builds the network; it is called as ``net(x)``.
        x_train, y_train: training features (N, F) and class indices (N,).
        x_val, y_val: validation features and classes (empty: the last step is kept).
        steps: optimiser steps.
        lr: Adam's learning rate.
        weight_decay: Adam's weight decay.
        seed: the seed.

    Returns:
        The trained network, in eval mode.
    """
    import copy

    # (inside a test loop, Lightning runs in inference mode: grad is switched back on here)
    with torch.random.fork_rng(devices=[]), torch.inference_mode(False), torch.enable_grad():
        torch.manual_seed(seed)
        net = make_net()
        xt, yt = torch.as_tensor(x_train, dtype=torch.float32), torch.as_tensor(y_train, dtype=torch.long)
        xv, yv = torch.as_tensor(x_val, dtype=torch.float32), torch.as_tensor(y_val, dtype=torch.long)
        optimizer = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
        loss_fn = nn.CrossEntropyLoss()
        best, best_state = float("inf"), copy.deepcopy(net.state_dict())
        for _ in range(steps):
            net.train()
            optimizer.zero_grad()
            loss = loss_fn(net(xt), yt)
            loss.backward()
            optimizer.step()
            if len(xv):
                net.eval()
                with torch.no_grad():
                    val = float(loss_fn(net(xv), yv))
                if val < best:
                    best, best_state = val, copy.deepcopy(net.state_dict())
        if len(xv):
            net.load_state_dict(best_state)
    return net.eval()


def probabilities(net: nn.Module, x: np.ndarray) -> np.ndarray:
    """Softmax class probabilities of ``net`` on features ``x``."""
    with torch.no_grad():
        return torch.softmax(net(torch.as_tensor(x, dtype=torch.float32)), dim=1).numpy()
