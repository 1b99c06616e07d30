"""``model.inferer.memory_gb``: whole-volume inference within a memory budget.

The budget (:mod:`medvision.models.inference_memory`) lowers the sliding window's batch from the traced
size of one window, and ``medvision-predict`` then takes the softmax in place and puts the classes back
on the input's grid one at a time: the masks must be exactly those of the unbounded prediction. Real
MONAI nets, real NIfTI files and the real ``medvision-predict`` path, with the tiny sphere segmenter of
:mod:`predict_fixtures` (trained once per session; its confident probabilities leave no near-tie that
float rounding could flip) on an 80 x 80 x 48 volume of 1 x 1 x 1.5 mm voxels in LAS orientation, so that
the inversion resamples and flips.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.networks.nets import UNet

from conftest import compose_in
from medvision.models import inference_memory as im
from medvision.utils.errors import MedvisionError
from predict_fixtures import segmenter_checkpoint, spheres

SHAPE = (80, 80, 48)
SPACING = (1.0, 1.0, 1.5)
ROI = (32, 32, 32)


@pytest.fixture(scope="module")
def seg_ckpt(medvision_home: Path) -> Path:
    return segmenter_checkpoint(medvision_home)


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An 80x80x48 LAS NIfTI of spheres (anisotropic voxels: the preprocessing resamples it)."""
    rng = np.random.default_rng(3)
    axes = [np.arange(n) * s for n, s in zip(SHAPE, SPACING, strict=True)]
    points = np.stack(np.meshgrid(*axes, indexing="ij"), -1)
    image, _ = spheres(points, rng, np.array(SHAPE) * np.array(SPACING), n=10)
    affine = np.diag([-SPACING[0], SPACING[1], SPACING[2], 1.0])
    affine[:3, 3] = (40.0, -30.0, 10.0)
    path = tmp_path_factory.mktemp("memory_case") / "case.nii.gz"
    nib.save(nib.Nifti1Image(image.astype(np.float32), affine), path)
    assert nib.aff2axcodes(affine) == ("L", "A", "S")
    return path


def _predict(home: Path, run_dir: Path, ckpt: Path | str, case: Path, *overrides: str):
    from medvision.inference.predict import predict

    cfg = compose_in(
        home,
        run_dir / "run",
        [f"ckpt_path={ckpt}", f"input={case}", f"output={run_dir / 'masks'}", "device=cpu", *overrides],
        config_name="predict",
    )
    return predict(cfg), run_dir / "masks"


def _small_unet() -> UNet:
    return UNet(spatial_dims=3, in_channels=1, out_channels=2, channels=(8, 16), strides=(2,), num_res_units=1)


def test_a_smaller_budget_gives_fewer_windows_and_an_impossible_one_names_the_gib_needed() -> None:
    window = im.window_activation_bytes(_small_unet(), 1, ROI)
    assert window > 2 * 8 * math.prod(ROI) // 8 * 4  # at least the first level's two 8-channel maps
    volume, per_window = im.window_stage_bytes(SHAPE, 1, 2, ROI, window_bytes=window)
    fixed = sum(volume.values())
    assert volume["the stitched class scores"] == 2 * math.prod(SHAPE) * 4

    def batch(gb: float, **kwargs) -> int:
        return im.sliding_window_kwargs(SHAPE, 1, 2, ROI, gb, window_bytes=window, **kwargs)["sw_batch_size"]

    # room for k windows beside the full-volume buffers -> k windows (at most the configured 4)
    for k in (1, 2, 3, 4, 6):
        assert batch((fixed + k * per_window + per_window // 2) / im.GIB) == min(k, 4)
    assert batch(64.0, sw_batch_size=8) == 8  # a budget never raises the configured batch
    budgets = np.linspace(fixed + per_window, fixed + 5 * per_window, 25) / im.GIB
    sizes = [batch(float(gb)) for gb in budgets]
    assert sizes == sorted(sizes) and sizes[0] == 1 and sizes[-1] == 4

    # a real CT (512x512x300, 3 classes) cannot be predicted in 1 GiB: the message says what it needs
    ct = (512, 512, 300)
    with pytest.raises(MedvisionError) as err:
        im.sliding_window_kwargs(ct, 1, 3, ROI, 1.0, window_bytes=window)
    text = str(err.value)
    assert "model.inferer.memory_gb=1 GiB cannot hold a 512x512x300 image" in text
    assert "the stitched class scores 0.88 GiB" in text  # 3 x 512 x 512 x 300 float32
    figure = re.search(r"at least ([0-9.]+)", err.value.fix).group(1)
    needed = float(figure)
    assert 1.0 < needed < 3.0 and f"(medvision-predict: inferer.memory_gb={figure})" in err.value.fix
    assert im.sliding_window_kwargs(ct, 1, 3, ROI, needed, window_bytes=window)["sw_batch_size"] >= 1
    with pytest.raises(MedvisionError):  # the figure is tight to 0.1 GiB
        im.sliding_window_kwargs(ct, 1, 3, ROI, needed - 0.1, window_bytes=window)


def test_on_a_gpu_the_output_moves_to_host_memory_when_it_does_not_fit_beside_the_windows() -> None:
    window = im.window_activation_bytes(_small_unet(), 1, ROI)
    volume, per_window = im.window_stage_bytes(SHAPE, 1, 2, ROI, window_bytes=window)
    fixed = sum(volume.values())
    cuda = torch.device("cuda")  # a device name only: nothing runs on it

    def settings(budget_bytes: int, device: torch.device) -> dict:
        return im.sliding_window_kwargs(SHAPE, 1, 2, ROI, budget_bytes / im.GIB, window_bytes=window, device=device)

    assert settings(fixed + 8 * per_window, cuda) == {"sw_batch_size": 4, "sw_device": cuda, "device": cuda}
    tight = settings(fixed + per_window // 2, cuda)
    assert tight["sw_device"] == cuda and tight["device"] == torch.device("cpu") and tight["sw_batch_size"] >= 1
    # the windows are blended in a GPU buffer one window thick along the axis with the most windows (0 or 1)
    assert tight["buffer_steps"] == 1 and tight["buffer_dim"] in (0, 1)
    with pytest.raises(MedvisionError):  # on a CPU the windows share that budget with the full volumes
        settings(fixed + per_window // 2, torch.device("cpu"))


def _peak_rss_reset() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def _rss_mib(field: str) -> float:
    """``VmHWM`` (peak since the reset) or ``VmRSS`` of this process, MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} in /proc/self/status")


def test_the_traced_window_bounds_the_resident_memory_a_window_batch_adds() -> None:
    net = UNet(spatial_dims=3, in_channels=1, out_channels=3, channels=(16, 32, 64), strides=(2, 2), num_res_units=2)
    net.eval()
    roi, batch = (64, 64, 64), 2
    traced = im.window_activation_bytes(net, 1, roi)
    _, per_window = im.window_stage_bytes(roi, 1, 3, roi, window_bytes=traced)
    x = torch.randn(batch, 1, *roi)
    with torch.no_grad():
        net(x)  # the kernels' one-time set-up
        _peak_rss_reset()
        before = _rss_mib("VmRSS")
        out = net(x)
        grown = (max(_rss_mib("VmHWM"), _rss_mib("VmRSS")) - before) * 2**20
    assert out.shape == (batch, 3, *roi)
    # the output alone (3 x 64^3 x 2 windows) is counted: the trace sees what the network creates
    assert traced >= 3 * math.prod(roi) * 4
    assert grown <= batch * per_window, (
        f"a window batch added {grown / 2**20:.0f} MiB; counted {batch * per_window / 2**20:.0f}"
    )


def test_in_place_softmax_and_streamed_argmax_match_torch_and_numpy() -> None:
    from medvision.inference.predict import argmax_classes

    logits = torch.randn(2, 3, 7, 5, 4)
    expected = torch.softmax(logits, dim=1)
    pointer = logits.data_ptr()
    out = im.softmax_(logits, chunk_voxels=40)  # slabs of two planes
    assert out.data_ptr() == pointer and torch.allclose(out, expected, atol=1e-7)
    assert torch.equal(out.argmax(1), expected.argmax(1))

    rng = np.random.default_rng(0)
    scores = rng.integers(0, 3, size=(4, 6, 5, 3)).astype(np.float32)  # many ties: the first class wins
    mask = argmax_classes(iter(scores), 4)
    assert mask.dtype == np.uint8 and np.array_equal(mask, scores.argmax(0))
    many = rng.random((300, 4, 3)).astype(np.float32)
    assert argmax_classes(many, 300).dtype == np.int16
    assert np.array_equal(argmax_classes(many, 300), many.argmax(0))


def test_a_budget_gives_the_same_masks_through_medvision_predict(
    medvision_home: Path, seg_ckpt: Path, case: Path, tmp_path: Path
) -> None:
    from monai.transforms import allow_missing_keys_mode
    from omegaconf import OmegaConf

    from medvision.inference.predict import load_members

    # the smallest budget (1 MiB steps) the case fits in: fewer windows at a time than the run's 4
    spec = OmegaConf.create({"ckpt_path": str(seg_ckpt), "tta": "mirror", "inferer": {}, "classifier_input": None})
    member = load_members(spec)[0][0]
    module = member.module.eval()
    with allow_missing_keys_mode(member.transform):
        image = member.transform({"image": str(case)})["image"][None]
    assert module.inferer["sw_batch_size"] == 4 and tuple(module.inferer["roi_size"]) == ROI
    budget = None
    for step in range(1, 2000):
        module.inferer["memory_gb"] = step / 1024
        try:
            settings = module.window_settings(image, tta=True)
        except MedvisionError:
            continue
        budget = module.inferer["memory_gb"]
        break
    assert budget is not None and settings["sw_batch_size"] < 4, settings

    # medvision-predict on the NIfTI: unbounded (with probabilities), bounded (classes streamed into the arg-max),
    # and a bounded ensemble of the checkpoint with itself (classes summed over the members in place: (p + p) / 2 = p)
    runs = {
        "unbounded": ["save_probabilities=true"],
        "bounded": [f"inferer.memory_gb={budget}"],
        "bounded_ensemble": [f"inferer.memory_gb={budget}", "save_probabilities=true"],
    }
    masks, probabilities, affines = {}, {}, {}
    for name, overrides in runs.items():
        ckpt = f"[{seg_ckpt},{seg_ckpt}]" if name == "bounded_ensemble" else seg_ckpt
        summary, out = _predict(medvision_home, tmp_path / name, ckpt, case, *overrides)
        assert summary.failed == {} and summary.exit_code == 0, summary.failed
        written = nib.load(out / "case.nii.gz")
        masks[name], affines[name] = np.asarray(written.dataobj), written.affine
        if (out / "case_probabilities.nii.gz").is_file():
            probabilities[name] = np.asarray(nib.load(out / "case_probabilities.nii.gz").dataobj)
    reference = masks["unbounded"]
    assert reference.shape == SHAPE and 0 < int((reference > 0).sum()) < reference.size // 2
    for name in ("bounded", "bounded_ensemble"):
        assert masks[name].dtype == reference.dtype
        assert np.array_equal(masks[name], reference), f"{name}: {int((masks[name] != reference).sum())} voxels differ"
        assert np.array_equal(affines[name], affines["unbounded"])
    assert sorted(probabilities) == ["bounded_ensemble", "unbounded"]
    assert np.allclose(probabilities["bounded_ensemble"], probabilities["unbounded"], atol=1e-5)


def test_a_budget_too_small_skips_the_case_with_the_gib_it_needs(
    medvision_home: Path, seg_ckpt: Path, case: Path, tmp_path: Path
) -> None:
    summary, out = _predict(medvision_home, tmp_path / "tiny", seg_ckpt, case, "inferer.memory_gb=0.001")
    assert summary.exit_code == 3 and list(summary.failed) == ["case"] and not (out / "case.nii.gz").exists()
    message = summary.failed["case"]
    assert "model.inferer.memory_gb=0.001 GiB cannot hold" in message
    assert re.search(
        r"raise model\.inferer\.memory_gb to at least [0-9.]+ \(medvision-predict: inferer\.memory_gb=", message
    )
    with pytest.raises(MedvisionError, match="not a positive number"):
        _predict(medvision_home, tmp_path / "bad", seg_ckpt, case, "inferer.memory_gb=-2")
