import math

import numpy as np
import pytest
import torch

from models.checkpoint import load_trajectory_net
from models.trajectory import TrajectoryNet, order_poses, reference_pose_order
from tests.conftest import OFFICIAL


@pytest.fixture(scope="module")
def small_net() -> TrajectoryNet:
    torch.manual_seed(0)
    return TrajectoryNet(n_positions=25, nc1=4).eval()


@pytest.mark.parametrize("height, width", [(64, 64), (96, 48), (75, 131)])
def test_output_shape_is_independent_of_resolution(small_net, height, width):
    with torch.no_grad():
        trajectory = small_net(torch.rand(2, 3, height, width), torch.tensor([100.0, 300.0]))
    assert trajectory.shape == (2, 25, 3)
    assert trajectory.abs().max() <= math.pi / 4


def test_pitch_and_yaw_are_pixel_outputs_over_the_focal_length(small_net):
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        near, far = small_net(image, torch.tensor([100.0])), small_net(image, torch.tensor([1000.0]))
    assert torch.allclose(torch.tan(near[..., :2]) * 100, torch.tan(far[..., :2]) * 1000, atol=1e-4)
    assert torch.equal(near[..., 2], far[..., 2])


def test_configurable_number_of_positions():
    net = TrajectoryNet(n_positions=9, nc1=2).eval()
    assert net(torch.rand(1, 3, 32, 32), torch.tensor([32.0])).shape == (1, 9, 3)
    assert net.state_dict()["pitch_yaw_end.4.weight"].shape[0] == 18


def test_reference_order_recovers_a_shuffled_path_up_to_reversal():
    path = torch.stack([torch.linspace(-0.1, 0.1, 25), 0.02 * torch.linspace(-1, 1, 25) ** 2, torch.zeros(25)], -1)
    shuffle = torch.randperm(25, generator=torch.Generator().manual_seed(1))
    ordered = order_poses(path[shuffle][None])[0]
    assert torch.equal(ordered, path) or torch.equal(ordered, path.flip(0))


def test_reference_order_is_batched():
    trajectories = 0.05 * torch.randn(3, 25, 3, generator=torch.Generator().manual_seed(2))
    batched = reference_pose_order(trajectories)
    assert all(torch.equal(batched[i], reference_pose_order(trajectories[i : i + 1])[0]) for i in range(3))


def test_parity_with_the_authors_network(case_b):
    """Tolerance 1e-5 rad; measured 5.8e-11. Sort order identical."""
    net = load_trajectory_net(OFFICIAL / "case_b_trajectory_state.pt")
    with torch.no_grad():
        positions = net(torch.from_numpy(case_b["blurry_input"]), torch.from_numpy(case_b["f"]))
    assert np.abs(positions.numpy() - case_b["positions"]).max() <= 1e-5
    assert reference_pose_order(positions)[0].tolist() == case_b["sort_order"].tolist()


def test_the_runtime_metric_orders_poses_as_the_graphs_do():
    """`runtime.tools.metrics.reference_order` (numpy, for the evaluation) is the torch ordering the graphs export."""
    from runtime.tools.metrics import reference_order

    trajectories = 0.02 * torch.randn(4, 25, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    for trajectory, order in zip(trajectories, reference_pose_order(trajectories), strict=True):
        assert reference_order(trajectory.numpy()).tolist() == order.tolist()
