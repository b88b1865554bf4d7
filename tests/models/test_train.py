"""Training smoke tests on tiny crops: losses finite and decreasing, resume equals an uninterrupted run,
checkpoints load with models.checkpoint; and the pure pieces (losses, schedule, trajectory mixing)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

pytest.importorskip("skimage")

from models.checkpoint import load_net, load_restoration_net, load_trajectory_net, save_checkpoint  # noqa: E402
from models.geometry import intrinsics  # noqa: E402
from models.losses import matched_error_px, ordered_error_px  # noqa: E402
from models.restoration import RestorationNet  # noqa: E402
from models.shake import probe_points, random_trajectory  # noqa: E402
from models.train import (  # noqa: E402
    COMPACT_RESTORATION,
    COMPACT_TRAJECTORY,
    RUNTIME_SIGMA,
    STATE_FILE,
    TrainConfig,
    Trainer,
    joint_loss,
    learning_rate,
    main,
    mix_trajectories,
    perturb_trajectory,
    sigma_for_net,
    trajectory_loss,
)
from models.trajectory import TrajectoryNet  # noqa: E402
from runtime.tools.metrics import trajectory_error  # noqa: E402

SMALL_RESTORATION = {"nc": (8, 16, 16, 32), "nb": 1, "n_iter": 2, "h_nc": 8}
TINY = {"batch": 2, "crop": 48, "warmup": 0, "log_every": 1, "validation_batch": 2, "threads": 2}


def _trainer(mode: str, out, **overrides) -> Trainer:
    return Trainer(TrainConfig(mode=mode, out=str(out), **{**TINY, **overrides}), log=lambda line: None)


@pytest.fixture(scope="module")
def trajectory_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("nets") / "trajectory.pt"
    save_checkpoint(TrajectoryNet(nc1=4), path)
    return path


@pytest.fixture(scope="module")
def restoration_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("nets") / "restoration.pt"
    save_checkpoint(RestorationNet(**SMALL_RESTORATION), path)
    return path


# --- losses and pure pieces -------------------------------------------------------------------------------------


def test_matched_error_ignores_pose_order_and_equals_the_evaluation_metric():
    camera = intrinsics(48, 64, 70.0).expand(2, 3, 3)
    truth = torch.from_numpy(
        np.stack([random_trajectory(np.random.default_rng(s), 6.0, 70.0, 48, 64) for s in (1, 2)])
    ).float()
    shuffled = truth[:, torch.randperm(25, generator=torch.Generator().manual_seed(0))]
    assert torch.allclose(matched_error_px(truth, truth, camera, 48, 64), torch.zeros(2), atol=1e-4)
    assert torch.allclose(matched_error_px(shuffled, truth, camera, 48, 64), torch.zeros(2), atol=1e-4)
    zero = matched_error_px(torch.zeros_like(truth), truth, camera, 48, 64)
    assert float(zero.min()) > 1.0  # zero motion is the baseline an estimate must beat
    estimate = 0.7 * shuffled + 0.002
    points = probe_points(48, 64).numpy()
    expected = [trajectory_error(estimate[i].numpy(), truth[i].numpy(), 48, 64, 70.0, points) for i in range(2)]
    assert matched_error_px(estimate, truth, camera, 48, 64).numpy() == pytest.approx(expected, rel=1e-4)


def test_matched_error_has_a_finite_gradient_that_lowers_it():
    camera = intrinsics(48, 64, 70.0).reshape(1, 3, 3)
    truth = torch.from_numpy(random_trajectory(np.random.default_rng(3), 6.0, 70.0, 48, 64)).float()[None]
    estimate = (0.5 * truth).requires_grad_(True)
    error = matched_error_px(estimate, truth, camera, 48, 64).sum()
    error.backward()
    assert estimate.grad is not None and torch.isfinite(estimate.grad).all()
    stepped = estimate.detach() - 1e-3 * estimate.grad / estimate.grad.norm()
    assert float(matched_error_px(stepped, truth, camera, 48, 64)) < float(error.detach())


def _recorded_like_truth(seeds=(1, 2)) -> torch.Tensor:
    return torch.from_numpy(
        np.stack([random_trajectory(np.random.default_rng(s), 6.0, 70.0, 48, 64) for s in seeds])
    ).float()


def test_path_order_error_is_zero_for_the_truth_in_any_order_or_direction():
    camera = intrinsics(48, 64, 70.0).expand(2, 3, 3)
    truth = _recorded_like_truth()
    shuffled = truth[:, torch.randperm(25, generator=torch.Generator().manual_seed(0))]
    for same_set in (truth, shuffled, truth.flip(dims=(1,))):
        assert torch.allclose(ordered_error_px(same_set, truth, camera, 48, 64), torch.zeros(2), atol=1e-4)


def test_path_order_error_grows_when_poses_stray_off_the_path_and_never_undercuts_the_matched_error():
    camera = intrinsics(48, 64, 70.0).expand(2, 3, 3)
    truth = _recorded_like_truth()
    scaled = 0.8 * truth
    # Neighbouring poses swapped pairwise: the same set of positions, hence the same ordered error.
    zigzag = scaled.clone()
    zigzag[:, 1:-1:2], zigzag[:, 2::2] = scaled[:, 2::2], scaled[:, 1:-1:2]
    noisy = scaled + 0.004 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(1))
    for estimate in (scaled, zigzag, noisy):
        matched = matched_error_px(estimate, truth, camera, 48, 64)
        assert (ordered_error_px(estimate, truth, camera, 48, 64) >= matched - 1e-4).all()
    assert torch.allclose(
        ordered_error_px(zigzag, truth, camera, 48, 64), ordered_error_px(scaled, truth, camera, 48, 64), atol=1e-4
    )  # the runtime reorders a set, so pose indices never matter: only the positions do
    assert (ordered_error_px(noisy, truth, camera, 48, 64) > matched_error_px(noisy, truth, camera, 48, 64)).any()


def test_learning_rate_warms_up_then_decays_to_its_final_fraction():
    config = TrainConfig(mode="trajectory", out="", steps=1000, lr=1e-3, warmup=100, lr_final=0.05)
    assert learning_rate(0, config) == pytest.approx(1e-5)
    assert learning_rate(99, config) == pytest.approx(1e-3)
    assert learning_rate(550, config) == pytest.approx(1e-3 * (0.05 + 0.95 * 0.5))
    assert learning_rate(1000, config) == pytest.approx(5e-5)


def test_finetune_trajectories_mix_true_predicted_and_perturbed():
    generator = torch.Generator().manual_seed(0)
    truth = torch.randn(64, 25, 3) * 0.01
    truth = truth - truth.mean(dim=1, keepdim=True)
    predicted = torch.randn(64, 25, 3) * 0.01
    assert torch.equal(mix_trajectories(truth, predicted, (1.0, 0.0, 0.0), generator), truth)
    assert torch.equal(mix_trajectories(truth, predicted, (0.0, 1.0, 0.0), generator), predicted)
    perturbed = perturb_trajectory(truth, generator)
    assert torch.allclose(perturbed.mean(dim=1), torch.zeros(64, 3), atol=1e-7)
    relative = (perturbed - truth).norm(dim=(1, 2)) / truth.norm(dim=(1, 2))
    assert 0.0 < float(relative.min()) and float(relative.max()) < 1.0
    mixed = mix_trajectories(truth, predicted, (0.3, 0.4, 0.3), generator)
    is_true = (mixed == truth).all(dim=(1, 2))
    is_predicted = (mixed == predicted).all(dim=(1, 2))
    assert is_true.any() and is_predicted.any() and (~is_true & ~is_predicted).any()


def test_the_restoration_net_is_told_the_true_noise_or_the_runtime_default():
    generator = torch.Generator().manual_seed(0)
    sigma = torch.linspace(0, 0.02, 200)
    told = sigma_for_net(sigma, 0.5, generator)
    default = told == RUNTIME_SIGMA
    assert 50 < int(default.sum()) < 150
    assert torch.all(told[~default] >= sigma[~default])  # floored at the 8-bit quantisation noise
    assert torch.all(sigma_for_net(sigma, 1.0, generator) == RUNTIME_SIGMA)


# --- training ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["trajectory", "restoration", "finetune"])
def test_losses_are_finite_and_decrease_on_a_fixed_batch(mode, tmp_path, trajectory_checkpoint):
    extra = {"trajectory_net": str(trajectory_checkpoint)} if mode == "finetune" else {}
    # finetune: the same trajectories every step, so that the batch is truly fixed
    extra |= {"mix": (0.0, 1.0, 0.0), "sigma_default_share": 0.0} if mode != "trajectory" else {}
    # the compact trajectory net; a narrower restoration net of the same architecture (CI time)
    extra |= {"architecture": SMALL_RESTORATION} if mode != "trajectory" else {}
    trainer = _trainer(mode, tmp_path, steps=15, lr=1e-3, **extra)
    batch = trainer.batch(0)
    losses = [trainer.train_step(batch)[0] for _ in range(15)]
    assert all(math.isfinite(loss) for loss in losses)
    assert np.mean(losses[-3:]) < 0.9 * np.mean(losses[:3]), losses


def test_joint_training_moves_the_trajectory_net_through_a_fixed_restoration_net(tmp_path, restoration_checkpoint):
    trainer = _trainer("joint", tmp_path, steps=2, restoration_net=str(restoration_checkpoint), architecture={"nc1": 4})
    batch = trainer.batch(0)
    sigma = torch.full_like(batch.sigma, RUNTIME_SIGMA)
    assert trainer.restoration_net is not None
    # without the task term the joint loss is the trajectory loss; with it, higher by the weighted restored L1
    plain = dataclasses.replace(trainer.config, task_weight=0.0)
    base, base_parts = joint_loss(trainer.net, trainer.restoration_net, batch, sigma, plain)
    trajectory, _ = trajectory_loss(trainer.net, batch, plain.reblur_weight, plain.order_weight)
    assert torch.isclose(base, trajectory) and 5 < base_parts["psnr"] < 60
    weighted, _ = joint_loss(trainer.net, trainer.restoration_net, batch, sigma, trainer.config)
    assert weighted > base
    fixed = {key: value.clone() for key, value in trainer.restoration_net.state_dict().items()}
    moving = {key: value.clone() for key, value in trainer.net.state_dict().items()}
    trainer.run()
    assert all(torch.equal(value, trainer.restoration_net.state_dict()[key]) for key, value in fixed.items())
    assert any(not torch.equal(value, trainer.net.state_dict()[key]) for key, value in moving.items())
    assert "restored with the estimate" in trainer.validate()
    assert load_trajectory_net(tmp_path / "trajectory.pt").nc1 == 4
    with pytest.raises(ValueError, match="--restoration-net"):
        _trainer("joint", tmp_path / "none", steps=1)


def test_resume_continues_the_step_count_and_equals_an_uninterrupted_run(tmp_path):
    whole = _trainer("trajectory", tmp_path / "whole", steps=6, save_every=100, architecture={"nc1": 4})
    whole.run()
    interrupted = _trainer("trajectory", tmp_path / "parts", steps=6, save_every=100, architecture={"nc1": 4})
    interrupted.run(stop_at=3)
    assert torch.load(tmp_path / "parts" / STATE_FILE, weights_only=True)["step"] == 3
    resumed = _trainer("trajectory", tmp_path / "parts", steps=6, save_every=100, architecture={"nc1": 4})
    resumed.resume()
    assert resumed.step == 3
    resumed.run()
    assert resumed.step == whole.step == 6
    for key, value in whole.net.state_dict().items():
        assert torch.equal(value, resumed.net.state_dict()[key]), key


def test_resume_refuses_a_run_of_another_mode(tmp_path):
    trainer = _trainer("trajectory", tmp_path, steps=1, architecture={"nc1": 4})
    trainer.run()
    other = _trainer("restoration", tmp_path, steps=1, architecture={"nc": (4, 8, 8, 16), "nb": 1})
    with pytest.raises(ValueError, match="trajectory run"):
        other.resume()


def test_checkpoints_load_with_the_compact_architectures(tmp_path, trajectory_checkpoint):
    trajectory = _trainer("trajectory", tmp_path / "t", steps=1)
    trajectory.run()
    net = load_trajectory_net(tmp_path / "t" / "trajectory.pt")
    assert net.nc1 == COMPACT_TRAJECTORY["nc1"] and net.n_positions == 25
    restoration = _trainer("finetune", tmp_path / "f", steps=1, trajectory_net=str(trajectory_checkpoint))
    restoration.run()
    restored = load_restoration_net(tmp_path / "f" / "restoration.pt")
    assert (restored.nc, restored.nb, restored.n_iter, restored.h_nc) == (
        COMPACT_RESTORATION["nc"],
        COMPACT_RESTORATION["nb"],
        COMPACT_RESTORATION["n_iter"],
        COMPACT_RESTORATION["h_nc"],
    )
    for key, value in restoration.net.state_dict().items():
        assert torch.equal(value, restored.state_dict()[key]), key
    assert isinstance(load_net(tmp_path / "t" / "trajectory.pt"), TrajectoryNet)


def test_the_command_line_trains_logs_progress_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    arguments = ["trajectory", "--out", str(out), "--batch", "2", "--crop", "48", "--log-every", "1"]
    assert main([*arguments, "--steps", "2"]) == 0
    assert main([*arguments, "--steps", "3", "--resume"]) == 0
    lines = capsys.readouterr().out.splitlines()
    progress = [line for line in lines if line.startswith("step ")]
    assert [line.split()[1] for line in progress] == ["1/2", "2/2", "3/3"]
    assert all("loss" in line and "steps/s" in line and "ETA" in line for line in progress)
    assert any(line.startswith("saved") and "validation" in line for line in lines)
    assert load_trajectory_net(out / "trajectory.pt").nc1 == COMPACT_TRAJECTORY["nc1"]
    with pytest.raises(SystemExit):
        main(["trajectory", "--out", str(out), "--crop", "16"])
