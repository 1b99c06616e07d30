"""Grad-CAM overlays of validation images at the end of fit (MONAI's ``monai.visualize.GradCAM``).

For the first ``n_images`` validation samples the callback computes the Grad-CAM map of one
class (the predicted one, or the true one) at a target layer of the network, blends it over the
image (3D: the middle slice along the last spatial axis) and writes ``[image | overlay]`` PNGs
to ``<output_dir>/gradcam/``. The same pictures go to the TensorBoard and W&B loggers of the
run when those are present. The map is computed on a copy of the network, so the hooks that
MONAI's ``GradCAM`` registers never touch the trained model. A network with more inputs than
the image (the fusion classifier's clinical vector, named by the module's ``extra_inputs``) gets
them with each image, and the map is taken in its image branch (``net.image_branch``).
"""

from __future__ import annotations

import copy
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn

from medvision.callbacks.images import safe_stem, save_pictures, to_unit

#: target layer per network class (names relative to the network): the last block whose output
#: is still a spatial feature map. Anything else: the last convolution of the network.
DEFAULT_TARGET_LAYERS: dict[str, str] = {
    "ResNet": "layer4",  # MONAI ResNet-10 ... 200
    "ResNetFeatures": "layer4",
    "DenseNet": "class_layers.relu",  # MONAI DenseNet-121/169/...: norm5 + ReLU before pooling
    "DenseNet121": "class_layers.relu",
    "EfficientNetBN": "_swish",  # after _conv_head + _bn1, before pooling
}

CLASS_SOURCES = ("predicted", "label")


def default_target_layer(net: nn.Module) -> str:
    """The Grad-CAM target layer of ``net``: :data:`DEFAULT_TARGET_LAYERS`, else its last convolution.

    Raises:
        ValueError: the network has no convolution (Grad-CAM needs a spatial feature map).
    """
    if hasattr(net, "image_branch"):  # an image + clinical network: its (first) image encoder's layer
        branch = net.image_branch
        if branch is None:
            raise ValueError(
                "Grad-CAM explains an image branch; this network reads no image (model.inputs=clinical): "
                "switch callbacks.gradcam off (callbacks.gradcam=null)"
            )
        return f"{branch}.{default_target_layer(net.get_submodule(branch))}"
    if type(net).__name__ == "SliceRNN":
        raise ValueError(
            "Grad-CAM needs a network whose feature maps cover the whole input; SliceRNN encodes "
            "slices one by one: switch callbacks.gradcam off (callbacks.gradcam=null)"
        )
    names = dict(net.named_modules())
    for cls in type(net).__mro__:
        layer = DEFAULT_TARGET_LAYERS.get(cls.__name__)
        if layer is not None and layer in names:
            return layer
    convs = [name for name, mod in net.named_modules() if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    if not convs:
        raise ValueError(f"{type(net).__name__} has no convolution: set callbacks.gradcam.target_layers")
    return convs[-1]


def jet(values: np.ndarray) -> np.ndarray:
    """The 'jet' colour map: values in 0..1 (any shape) -> RGB in 0..1 (shape + (3,))."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    centres = np.array([0.75, 0.5, 0.25])  # red, green, blue peaks
    return np.clip(1.5 - np.abs(4.0 * v - 4.0 * centres), 0.0, 1.0)


def overlay_image(image: np.ndarray, cam: np.ndarray, alpha: float = 0.45, min_side: int = 128) -> np.ndarray:
    """``[image | heatmap over image]`` as an RGB ``uint8`` array (H, 2W, 3).

    Args:
        image: (C, H, W[, D]) network input; C is 1 (grey) or 3 (RGB); 3D: the middle slice of D.
        cam: (H, W[, D]) Grad-CAM map (any range; scaled to 0..1 here).
        alpha: weight of the heat map in the blend.
        min_side: small images are enlarged (nearest neighbour) to at least this side.
    """
    if image.ndim == 4:  # (C, H, W, D): the middle slice
        mid = image.shape[-1] // 2
        image, cam = image[..., mid], cam[..., mid]
    base = to_unit(image.astype(np.float64))
    rgb = np.repeat(base[:1], 3, axis=0) if base.shape[0] != 3 else base
    rgb = np.moveaxis(rgb, 0, -1)
    blend = (1.0 - alpha) * rgb + alpha * jet(to_unit(cam.astype(np.float64)))
    picture = np.concatenate([rgb, blend], axis=1)
    scale = max(1, -(-min_side // max(image.shape[-2:])))  # from the image's side, not the pair's
    picture = picture.repeat(scale, axis=0).repeat(scale, axis=1)
    return (picture * 255.0 + 0.5).astype(np.uint8)


class GradCAMOverlays(pl.Callback):
    """Grad-CAM heat maps of ``n_images`` validation images at the end of fit.

    Files: ``<output_dir>/<folder>/<k>_<sample id>_true-<name>_pred-<name>.png`` (image and
    overlay side by side, RGB). Loggers: TensorBoard ``add_image("gradcam/<k>", ...)`` and W&B
    ``log_image("gradcam", ...)``.

    Args:
        output_dir: the run's folder (``${paths.output_dir}``).
        n_images: how many validation samples (the first ones, in loader order).
        target_layers: layer of the network (a name of ``net.named_modules()``, e.g.
            ``layer4``); ``None``: :func:`default_target_layer`.
        class_source: ``predicted`` (the arg-max class) or ``label`` (the true class; multi-label:
            the first positive label, else the predicted one).
        folder: sub-folder of ``output_dir`` for the PNGs.
        alpha: weight of the heat map in the blend.
    """

    def __init__(
        self,
        output_dir: str,
        n_images: int = 8,
        target_layers: str | None = None,
        class_source: str = "predicted",
        folder: str = "gradcam",
        alpha: float = 0.45,
    ) -> None:
        if class_source not in CLASS_SOURCES:
            raise ValueError(f"class_source must be one of {CLASS_SOURCES}, not {class_source!r}")
        if n_images < 1:
            raise ValueError(f"n_images must be >= 1, not {n_images}")
        self.output_dir = Path(output_dir)
        self.n_images = n_images
        self.target_layers = target_layers
        self.class_source = class_source
        self.folder = folder
        self.alpha = alpha
        #: the PNGs written by the last fit
        self.written: list[Path] = []

    def _samples(
        self, trainer: pl.Trainer, extra_keys: tuple[str, ...] = ()
    ) -> list[tuple[torch.Tensor, torch.Tensor, str, dict[str, torch.Tensor]]]:
        """The first ``n_images`` validation samples: image, label, id, and the other inputs the
        network takes (``extra_keys``: a fusion classifier's ``clinical`` vector)."""
        loaders = trainer.val_dataloaders
        if loaders is None and trainer.datamodule is not None:
            loaders = trainer.datamodule.val_dataloader()
        loader = loaders[0] if isinstance(loaders, (list, tuple)) else loaders
        out: list[tuple[torch.Tensor, torch.Tensor, str, dict[str, torch.Tensor]]] = []
        for batch in loader or []:
            images, labels = batch["image"], batch["label"]
            ids = batch.get("id", [None] * len(images))
            for i in range(len(images)):
                image = images[i].as_tensor() if hasattr(images[i], "as_tensor") else images[i]
                label = labels[i].as_tensor() if hasattr(labels[i], "as_tensor") else labels[i]
                extra = {k: torch.as_tensor(batch[k][i]) for k in extra_keys if k in batch}
                out.append((image, torch.as_tensor(label), str(ids[i] if ids[i] is not None else len(out)), extra))
                if len(out) == self.n_images:
                    return out
        return out

    def _class_index(self, logits: torch.Tensor, label: torch.Tensor, multilabel: bool) -> int:
        if self.class_source == "label":
            if multilabel:
                positive = torch.nonzero(label.reshape(-1) > 0.5).reshape(-1)
                if len(positive):
                    return int(positive[0])
            else:
                return int(label.reshape(-1)[0])
        return int(logits.argmax(dim=1)[0])

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        from monai.visualize import GradCAM

        source = getattr(pl_module, "net", pl_module)
        if getattr(source, "image_branch", "") is None:  # reads no image (model.inputs=clinical)
            print("callbacks.gradcam: the network reads no image (model.inputs=clinical): no Grad-CAM maps")
            return
        layer = self.target_layers or default_target_layer(source)
        net = copy.deepcopy(source).to(pl_module.device).float().eval()
        cam = GradCAM(nn_module=net, target_layers=layer)
        names = list(getattr(pl_module, "label_names", []))
        multilabel = getattr(pl_module, "task", "") == "multilabel"
        folder = self.output_dir / self.folder
        pictures: list[np.ndarray] = []
        captions: list[str] = []
        paths: list[Path] = []
        with torch.inference_mode(False), torch.enable_grad():
            extra_keys = tuple(getattr(pl_module, "extra_inputs", ()))
            for k, (image, label, sample_id, extra) in enumerate(self._samples(trainer, extra_keys)):
                x = image[None].to(pl_module.device).float().clone().requires_grad_(True)
                # the other inputs of the network (a fusion classifier's clinical vector) go with the image
                inputs = {key: value[None].to(pl_module.device).float() for key, value in extra.items()}
                with torch.no_grad():
                    logits = net(x, **inputs)
                idx = self._class_index(logits, label, multilabel)
                heat = cam(x, class_idx=idx, **inputs)[0, 0].detach().cpu().numpy()
                pictures.append(overlay_image(image.detach().cpu().numpy(), heat, self.alpha))
                predicted = int(logits.argmax(dim=1)[0])
                true = "" if multilabel else int(label.reshape(-1)[0])
                name_of = lambda j: names[j] if isinstance(j, int) and j < len(names) else str(j)  # noqa: E731
                captions.append(f"{sample_id} true={name_of(true)} pred={name_of(predicted)} cam={name_of(idx)}")
                stem = safe_stem(f"{k:02d}_{sample_id}_true-{name_of(true)}_pred-{name_of(predicted)}")
                paths.append(folder / f"{stem}.png")
        self.written = save_pictures(trainer, "gradcam", pictures, paths, captions=captions)
