import json
import pickle

import pytest
import torch

from models import checkpoint
from models.checkpoint import CheckpointError, load_net, load_restoration_net, load_trajectory_net, save_checkpoint
from models.restoration import RestorationNet
from models.trajectory import UNUSED_STEM_PREFIXES, TrajectoryNet
from tests.conftest import OFFICIAL, shared_file


def small_trajectory_net() -> TrajectoryNet:
    return TrajectoryNet(n_positions=25, nc1=2)


def small_restoration_net(nb: int = 2) -> RestorationNet:
    return RestorationNet(n_iter=3, h_nc=8, nc=(4, 8, 8, 16), nb=nb)


def assert_one_line_naming(error: pytest.ExceptionInfo, path, *fragments: str) -> None:
    message = str(error.value)
    assert "\n" not in message and message.startswith(str(path))
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize("kind", ["trajectory", "restoration"])
def test_full_size_architectures_are_rebuilt_from_the_shapes_file(kind):
    """Build from shapes only (meta tensors, no weights): identical keys, order and shapes."""
    shapes = json.loads(shared_file("fixtures/official/official_state_dict_shapes.json").read_text())
    name = {"trajectory": "trajectory_nc1_64", "restoration": "restoration_default"}[kind]
    state = {key: torch.empty(shape, device="meta") for key, shape in shapes[name].items()}
    if kind == "trajectory":
        state = {key: value for key, value in state.items() if not key.startswith(UNUSED_STEM_PREFIXES)}
        assert len(state) == len(shapes[name]) - 6  # the three unused stems, weight and bias each
    architecture = checkpoint._ARCHITECTURE_READERS[kind](state)
    expected = {
        "trajectory": {"n_positions": 25, "nc1": 64},
        "restoration": {"n_iter": 8, "h_nc": 64, "nc": [64, 128, 256, 512], "nb": 2},
    }[kind]
    assert architecture == expected
    with torch.device("meta"):
        net = checkpoint.NETS[kind](**architecture)
    ours = net.state_dict()
    assert list(ours) == list(state)
    assert all(ours[key].shape == state[key].shape for key in state)


def test_the_authors_case_b_files_load_with_their_architecture():
    trajectory = load_trajectory_net(shared_file("fixtures/official/case_b_trajectory_state.pt"))
    restoration = load_restoration_net(OFFICIAL / "case_b_restoration_state.pt")
    assert (trajectory.n_positions, trajectory.nc1) == (25, 8)
    assert (restoration.n_iter, restoration.h_nc, restoration.nc, restoration.nb) == (2, 16, (8, 16, 32, 64), 1)
    assert not trajectory.training and not restoration.training


@pytest.mark.parametrize("make", [small_trajectory_net, small_restoration_net, lambda: small_restoration_net(nb=1)])
def test_our_checkpoints_round_trip(tmp_path, make):
    net = make()
    path = tmp_path / "net.pt"
    save_checkpoint(net, path)
    loaded = load_net(path)
    assert checkpoint.architecture_of(loaded) == checkpoint.architecture_of(net)
    assert all(torch.equal(loaded.state_dict()[key], value) for key, value in net.state_dict().items())
    assert [p.name for p in tmp_path.iterdir()] == ["net.pt"]  # no temporary file left behind


def test_nb_1_uses_the_authors_unwrapped_body_keys():
    keys = small_restoration_net(nb=1).state_dict().keys()
    assert "p.m_body.res.0.weight" in keys and "p.m_down1.1.weight" in keys


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError) as error:
        load_trajectory_net(tmp_path / "absent.pkl")
    assert_one_line_naming(error, tmp_path / "absent.pkl", "no such checkpoint file")


def test_truncated_file(tmp_path):
    whole = tmp_path / "whole.pt"
    save_checkpoint(small_restoration_net(), whole)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(CheckpointError) as error:
        load_restoration_net(truncated)
    assert_one_line_naming(error, truncated, "truncated, corrupt or not a PyTorch file")


def test_text_file(tmp_path):
    path = tmp_path / "notes.pkl"
    path.write_text("not a checkpoint\n")
    with pytest.raises(CheckpointError) as error:
        load_net(path)
    assert_one_line_naming(error, path, "cannot load checkpoint")


def test_pickle_of_arbitrary_objects_is_refused_without_running_it(tmp_path):
    path = tmp_path / "objects.pkl"
    path.write_bytes(pickle.dumps({"weights": pytest.ExceptionInfo}, protocol=2))
    with pytest.raises(CheckpointError) as error:
        load_net(path)
    assert_one_line_naming(error, path, "weights-only load refuses")


def test_pickle_of_something_else(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(CheckpointError) as error:
        load_net(path)
    assert_one_line_naming(error, path, "holds a list, not a state dict")


def test_state_dict_of_the_wrong_net(tmp_path):
    path = tmp_path / "restoration.pkl"
    torch.save(small_restoration_net().state_dict(), path)
    with pytest.raises(CheckpointError) as error:
        load_trajectory_net(path)
    assert_one_line_naming(error, path, "holds a restoration-net state dict, expected the trajectory net")


def test_state_dict_of_an_unknown_net(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"encoder.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(CheckpointError) as error:
        load_net(path)
    assert_one_line_naming(error, path, "not a Blur2Seq state dict", "encoder.weight")


def test_missing_and_mis_shaped_keys_are_named(tmp_path):
    state = small_trajectory_net().state_dict()
    del state["down3.double_conv.2.bias"]
    state["feat.0.weight"] = torch.zeros(1, 2, 3, 3)
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "damaged.pkl"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as error:
        load_trajectory_net(path)
    assert_one_line_naming(
        error,
        path,
        "missing down3.double_conv.2.bias",
        "unexpected extra.weight",
        "mis-shaped (file vs net) feat.0.weight",
    )


def test_key_needed_to_infer_the_architecture_is_named(tmp_path):
    state = small_restoration_net().state_dict()
    del state["h.mlp.4.weight"]
    path = tmp_path / "no_hypernet.pkl"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as error:
        load_restoration_net(path)
    assert_one_line_naming(error, path, "missing h.mlp.4.weight")


def test_our_metadata_must_name_the_same_net(tmp_path):
    state = dict(small_trajectory_net().state_dict())
    state[checkpoint.METADATA_KEY] = {"format_version": 1, "net": "restoration", "architecture": {}}
    path = tmp_path / "mislabelled.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as error:
        load_net(path)
    assert_one_line_naming(error, path, "metadata says 'restoration' net")


def test_command_line_describes_files_and_fails_on_bad_ones(tmp_path, capsys):
    good = tmp_path / "good.pt"
    save_checkpoint(small_trajectory_net(), good)
    assert checkpoint.main([str(good)]) == 0
    assert "trajectory net {'n_positions': 25, 'nc1': 2}" in capsys.readouterr().out
    assert checkpoint.main([str(good), str(tmp_path / "absent.pt")]) == 1
    assert "absent.pt: no such checkpoint file" in capsys.readouterr().err
