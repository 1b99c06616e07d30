"""Classification parts: MedMNIST's ACC/AUC definitions, losses, and every classifier network."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from sklearn.metrics import accuracy_score, roc_auc_score

from medvision.metrics.classification import ClassificationMetrics
from medvision.models.losses import ClassificationLoss
from medvision.models.nets.slice_rnn import SliceRNN
from medvision.utils.config import config_dir

NETS = sorted(p.stem for p in (config_dir() / "model" / "net" / "cls").glob("*.yaml"))


def _medmnist_reference(task: str, y: np.ndarray, score: np.ndarray) -> tuple[float, float]:
    """MedMNIST's getACC/getAUC (medmnist/evaluator.py), transcribed with scikit-learn."""
    if task == "binary":
        return accuracy_score(y, score[:, -1] > 0.5), roc_auc_score(y, score[:, -1])
    if task == "multilabel":
        acc = np.mean([accuracy_score(y[:, j], score[:, j] >= 0.5) for j in range(y.shape[1])])
        return acc, np.mean([roc_auc_score(y[:, j], score[:, j]) for j in range(y.shape[1])])
    acc = accuracy_score(y, score.argmax(1))
    return acc, np.mean([roc_auc_score(y == c, score[:, c]) for c in range(score.shape[1])])


@pytest.mark.parametrize(("task", "n_classes"), [("binary", 2), ("multiclass", 5), ("multilabel", 6)])
def test_acc_and_auc_are_medmnist_definitions(task: str, n_classes: int) -> None:
    gen = torch.Generator().manual_seed(0)
    n = 300
    target = (
        torch.randint(0, 2, (n, n_classes), generator=gen)
        if task == "multilabel"
        else torch.randint(0, n_classes, (n,), generator=gen)
    )
    # informative but imperfect logits, so the values are far from 0.5 and 1.0
    signal = target.float() if task == "multilabel" else torch.nn.functional.one_hot(target, n_classes).float()
    logits = 1.2 * signal + torch.randn(n, n_classes, generator=gen)
    metrics = ClassificationMetrics(task, [f"c{i}" for i in range(n_classes)])
    for chunk in range(0, n, 64):  # several batches, as in an epoch
        metrics.update(logits[chunk : chunk + 64], target[chunk : chunk + 64])
    values = metrics.compute("test")
    acc, auc = _medmnist_reference(task, target.numpy(), metrics.scores(logits).numpy())
    assert values["test/acc"] == pytest.approx(acc, abs=1e-6)
    assert values["test/auc"] == pytest.approx(auc, abs=1e-5)
    assert 0.6 < auc < 0.95
    assert {f"test/auc_c{i}" for i in range(n_classes)} <= set(values)
    if task != "multilabel":
        recalls = [
            accuracy_score(target.numpy()[target.numpy() == c], logits.argmax(1).numpy()[target.numpy() == c])
            for c in range(n_classes)
        ]
        assert values["test/balanced_acc"] == pytest.approx(np.mean(recalls), abs=1e-6)
        assert metrics.confusion_matrix().sum() == n
    metrics.reset()
    metrics.update(logits[:10], target[:10])
    assert metrics.confusion_matrix().sum() == (10 * n_classes * 1 if task == "multilabel" else 10)


@pytest.mark.parametrize(
    ("task", "kind"),
    [("multiclass", "ce"), ("multiclass", "focal"), ("binary", "auto"), ("multilabel", "bce"), ("multilabel", "focal")],
)
def test_losses_train_the_right_way(task: str, kind: str) -> None:
    n_classes = 2 if task == "binary" else 3
    target = torch.tensor([[1, 0, 1], [0, 1, 0]]) if task == "multilabel" else torch.tensor([1, 0])
    loss = ClassificationLoss(
        task,
        n_classes,
        kind=kind,
        label_smoothing=0.1 if kind != "focal" else 0.0,
        class_weights=[1.0, 2.0, 0.5][:n_classes],
    )
    logits = torch.zeros(2, n_classes, requires_grad=True)
    value = loss(logits, target)
    value.backward()
    assert value.item() > 0
    # a gradient step lowers the loss: the sign convention is right
    lower = loss((logits - 1.0 * logits.grad).detach(), target)
    assert lower.item() < value.item()
    with pytest.raises(ValueError, match="cross-entropy needs one label per sample"):
        ClassificationLoss("multilabel", 3, kind="ce")


@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_every_classifier_net_gives_logits(net: str, spatial_dims: int) -> None:
    if net == "slice_rnn" and spatial_dims == 2:
        with pytest.raises(ValueError, match="volumes"):  # it reads volumes only, and says so
            instantiate(OmegaConf.load(config_dir() / "model" / "net" / "cls" / "slice_rnn.yaml"))(1, 2)(
                torch.randn(1, 1, 8, 8)
            )
        return
    cfg = OmegaConf.load(config_dir() / "model" / "net" / "cls" / f"{net}.yaml")
    if "spatial_dims" in cfg:
        cfg.spatial_dims = spatial_dims
    factory = instantiate(cfg)
    model = factory(in_channels=2, out_channels=4).eval()
    shape = (2, 2) + (32,) * spatial_dims
    with torch.no_grad():
        out = model(torch.randn(*shape))
    assert out.shape == (2, 4)


def test_slice_rnn_reads_slices_in_order() -> None:
    torch.manual_seed(0)
    net = SliceRNN(1, 3, encoder_channels=(4, 8), hidden_size=8, cell="lstm", pooling="max").eval()
    volume = torch.randn(2, 1, 5, 16, 16)
    with torch.no_grad():
        out = net(volume)
        shuffled = net(volume[:, :, [4, 2, 0, 1, 3]])
    assert out.shape == (2, 3)
    # a recurrent model is order-aware: shuffling the slices changes the output
    assert not torch.allclose(out, shuffled)
    with pytest.raises(ValueError, match="volumes"):
        net(torch.randn(2, 1, 16, 16))
