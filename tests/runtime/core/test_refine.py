import shutil

import cv2
import numpy as np
import pytest

from runtime.core import camera as camera_model
from runtime.core.backends import BackendSettings, load_runners
from runtime.core.bundle import load_bundle
from runtime.core.refine import RefineResult, RefineSettings, graph_function, refine_trajectory
from runtime.tools.metrics import trajectory_error
from tests.runtime.conftest import smooth_rgb

H, W, P = 80, 96, 25


def settings(**knobs) -> RefineSettings:
    """Refinement settings that refine at full resolution unless `knobs` give the scales."""
    return RefineSettings(**{"scales": (1.0,), **knobs})


@pytest.fixture(scope="module")
def runners(small_bundle, tmp_path_factory):
    from export.refine import export_refine

    bundle = tmp_path_factory.mktemp("refine-runtime") / "small"
    shutil.copytree(small_bundle, bundle)
    export_refine(bundle, log=lambda _: None)
    _, loaded = load_runners(
        load_bundle(bundle), ("sequence", "refine"), BackendSettings("ort-cpu"), log=lambda _: None
    )
    yield loaded
    for runner in loaded.values():
        runner.close()


def blurred_pair(runners, sharp):
    """`sharp`, its blur under a smooth shake (through the bundle's sequence graph), the shake and the camera."""
    t = np.linspace(0, 1, P)
    truth = np.stack([0.012 * np.sin(2.5 * t), 0.015 * np.cos(1.7 * t) - 0.01, 0.008 * (t - 0.5)], axis=1)
    truth = truth.astype(np.float32)
    camera = camera_model.intrinsics(H, W)
    reblurred = runners["sequence"].run(
        {
            "sharp": np.ascontiguousarray(sharp.transpose(2, 0, 1)[None]),
            "trajectory": truth[None],
            "intrinsics": camera[None].astype(np.float32),
        }
    )["reblurred"]
    return sharp, reblurred[0].transpose(1, 2, 0), truth, camera


@pytest.fixture(scope="module")
def pair(runners):
    return blurred_pair(runners, smooth_rgb(H, W, seed=1))


def test_refinement_lowers_the_loss_and_the_trajectory_error(runners, pair):
    sharp, blurry, truth, camera = pair
    start = truth + np.random.default_rng(0).normal(0, 0.004, truth.shape).astype(np.float32)
    result = refine_trajectory(graph_function(runners["refine"]), blurry, sharp, start, camera, settings(steps=30))
    assert isinstance(result, RefineResult) and result.steps_run == 30 and result.stopped == "steps"
    assert result.trajectory.shape == (P, 3) and result.trajectory.dtype == np.float32
    assert len(result.history) == 31 and result.history[0] == result.loss_before
    # Measured: loss 2.2e-05 -> ~3e-07, trajectory error 0.49 -> ~0.3 px.
    assert result.loss_after < 0.1 * result.loss_before
    before, after = trajectory_error(start, truth, H, W), trajectory_error(result.trajectory, truth, H, W)
    assert after < 0.8 * before


def test_coarse_to_fine(runners):
    # A coarse level has a model-error floor (bilinear warps of area-averaged images are not area-averaged
    # bilinear warps): measured here ~0.6x the loss of a 0.4 px trajectory error at half size. So the start is
    # ~1.2 px off, and the content smoother than `smooth_rgb`'s 8 px texture.
    sharp = cv2.resize(smooth_rgb(H // 2, W // 2, seed=1), (W, H), interpolation=cv2.INTER_CUBIC)
    sharp, blurry, truth, camera = blurred_pair(runners, np.clip(sharp, 0, 1))
    start = truth + np.random.default_rng(1).normal(0, 0.012, truth.shape).astype(np.float32)
    run = graph_function(runners["refine"])
    result = refine_trajectory(run, blurry, sharp, start, camera, settings(steps=(20, 3), scales=(0.5, 1.0)))
    assert result.steps_run == 23 and len(result.coarse_history) == 1 and len(result.coarse_history[0]) == 21
    assert len(result.history) == 5 and result.history[0] == result.loss_before
    assert min(result.coarse_history[0]) < result.coarse_history[0][0]
    assert result.loss_after < 0.5 * result.loss_before
    assert trajectory_error(result.trajectory, truth, H, W) < 0.8 * trajectory_error(start, truth, H, W)
    # Coarse only: the full resolution is still evaluated (start and the coarse level's best).
    coarse = refine_trajectory(run, blurry, sharp, start, camera, settings(steps=10, scales=(0.5,)))
    assert len(coarse.history) == 2 and coarse.loss_after <= coarse.loss_before


class CountingGraph:
    """A graph function that counts its calls by the image width it was given."""

    def __init__(self, runner) -> None:
        self.run, self.widths = graph_function(runner), []

    def __call__(self, inputs):
        self.widths.append(inputs["latent" if "latent" in inputs else "sharp"].shape[-1])
        return self.run(inputs)


def test_the_sequence_graph_takes_the_full_resolution_losses_when_no_step_runs_there(runners, pair):
    sharp, blurry, truth, camera = pair
    start = truth + np.random.default_rng(2).normal(0, 0.004, truth.shape).astype(np.float32)
    refine_alone = CountingGraph(runners["refine"])
    alone = refine_trajectory(refine_alone, blurry, sharp, start, camera, settings(steps=10, scales=(0.5,)))
    refine, sequence = CountingGraph(runners["refine"]), CountingGraph(runners["sequence"])
    both = refine_trajectory(
        refine, blurry, sharp, start, camera, settings(steps=10, scales=(0.5,)), run_sequence=sequence
    )
    # The two full-resolution evaluations (start, result) move from the refine graph to the sequence graph.
    assert refine_alone.widths.count(W) == 2 and W not in refine.widths and len(sequence.widths) == 2
    np.testing.assert_array_equal(both.trajectory, alone.trajectory)
    assert both.coarse_history == alone.coarse_history
    np.testing.assert_allclose([both.loss_before, both.loss_after], [alone.loss_before, alone.loss_after], rtol=1e-5)
    assert both.loss_after < both.loss_before
    # With steps at full resolution every evaluation there needs the gradient: the sequence graph is not used.
    unused = CountingGraph(runners["sequence"])
    refine_trajectory(
        graph_function(runners["refine"]), blurry, sharp, start, camera, settings(steps=2), run_sequence=unused
    )
    assert unused.widths == []


def test_the_mask_and_chw_inputs_are_accepted(runners, pair):
    sharp, blurry, truth, camera = pair
    start = truth + 0.003
    mask = np.ones((H, W), np.float32)
    mask[:, : W // 2] = 0
    result = refine_trajectory(
        graph_function(runners["refine"]),
        blurry.transpose(2, 0, 1)[None],
        sharp.transpose(2, 0, 1)[None],
        start,
        camera,
        settings(steps=5),
        mask=mask,
        n_positions=P,
    )
    assert result.loss_after < result.loss_before


def test_the_result_is_never_worse_than_the_start(runners, pair):
    sharp, blurry, truth, camera = pair
    # At the truth the loss is ~0; huge steps only make it worse, so the start must come back.
    result = refine_trajectory(
        graph_function(runners["refine"]), blurry, sharp, truth, camera, settings(steps=3, step_size=20)
    )
    assert result.loss_after == result.loss_before
    assert max(result.history[1:]) > result.loss_before
    np.testing.assert_array_equal(result.trajectory, truth)


class FakeGraph:
    """loss = |t - target|^2 with its gradient; returns NaN from call `nan_from` on."""

    def __init__(self, target: np.ndarray, nan_from: int | None = None) -> None:
        self.target, self.nan_from, self.calls = target, nan_from, 0

    def __call__(self, inputs):
        self.calls += 1
        difference = inputs["trajectory"].astype(np.float64) - self.target
        loss, gradient = np.array([(difference**2).sum()]), 2 * difference
        if self.nan_from is not None and self.calls >= self.nan_from:
            loss = np.array([np.nan])
        return {"loss": loss.astype(np.float32), "gradient": gradient.astype(np.float32)}


def images():
    image = np.zeros((40, 40, 3), np.float32)
    return image, image, camera_model.intrinsics(40, 40)


def test_a_nan_step_stops_the_loop_and_keeps_the_best_finite_iterate():
    blurry, latent, camera = images()
    graph = FakeGraph(np.zeros((P, 3)), nan_from=4)
    result = refine_trajectory(graph, blurry, latent, np.full((P, 3), 0.01), camera, settings(steps=10, step_size=0.05))
    assert result.stopped == "non-finite" and result.steps_run == 2 and len(result.history) == 3
    assert result.loss_after == min(result.history) < result.loss_before
    assert np.isfinite(result.trajectory).all()


def test_the_smoothness_prior_smooths():
    blurry, latent, camera = images()

    def constant(inputs):  # a reblur loss that ignores the trajectory: only the prior moves it
        return {"loss": np.array([1.0], np.float32), "gradient": np.zeros((1, P, 3), np.float32)}

    jagged = np.zeros((P, 3))
    jagged[::2] = 0.01
    result = refine_trajectory(
        constant, blurry, latent, jagged, camera, settings(steps=20, step_size=0.05, smoothness=1.0)
    )
    assert np.abs(np.diff(result.trajectory, axis=0)).sum() < np.abs(np.diff(jagged, axis=0)).sum()
    unchanged = refine_trajectory(constant, blurry, latent, jagged, camera, settings(steps=20, step_size=0.05))
    np.testing.assert_array_equal(unchanged.trajectory, jagged.astype(np.float32))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"trajectory": np.zeros((P, 2))}, "Px3"),
        ({"trajectory": np.full((P, 3), np.nan)}, "NaN"),
        ({"trajectory": np.zeros((24, 3)), "n_positions": P}, "25 poses"),
        ({"camera": np.diag([0.0, 0.0, 1.0])}, "focal length must be a positive"),
        ({"camera": np.diag([-5.0, -5.0, 1.0])}, "focal length must be a positive"),
        ({"camera": np.eye(4)}, "3x3"),
        ({"blurry": np.zeros((40, 41, 3), np.float32)}, "differ in shape"),
        ({"latent": np.full((40, 40, 3), np.nan, np.float32)}, "latent: the image holds NaN"),
        ({"blurry": np.zeros((40, 40), np.float32)}, "blurry: expected an HxWx3"),
        ({"mask": np.ones((10, 10))}, "mask: expected"),
        ({"mask": np.zeros((40, 40))}, "not all zero"),
        ({"steps": -1}, "steps"),
        ({"steps": True}, "steps"),
        ({"steps": (3, 4), "scales": (1.0,)}, "one per scale"),
        ({"scales": (1.0, 0.5)}, "increasing"),
        ({"scales": (0.5, 1.5)}, "increasing"),
        ({"scales": ()}, "increasing"),
        ({"step_size": 0.0}, "step size"),
        ({"smoothness": float("nan")}, "smoothness"),
    ],
)
def test_bad_input_gives_a_clear_error(change, message):
    blurry, latent, camera = images()
    knobs = {name: value for name, value in change.items() if name in ("steps", "step_size", "smoothness", "scales")}
    given = {name: value for name, value in change.items() if name not in knobs}
    arguments = {"blurry": blurry, "latent": latent, "trajectory": np.zeros((P, 3)), "camera": camera, **given}
    with pytest.raises(ValueError, match=message):
        refine_trajectory(FakeGraph(np.zeros((P, 3))), **arguments, settings=settings(**knobs))


def test_levels_too_small_for_the_image_are_raised_to_the_smallest_useful_size():
    blurry, latent, camera = images()  # 40x40: a level is at least 16 px, so 0.4 of the image
    graph = FakeGraph(np.zeros((P, 3)))
    result = refine_trajectory(
        graph, blurry, latent, np.full((P, 3), 0.01), camera, settings(steps=(3, 2), scales=(0.1, 0.2))
    )
    assert len(result.coarse_history) == 1 and len(result.coarse_history[0]) == 1 + 3 + 2  # one merged level
