"""Load the authors' checkpoints and ours into the reference nets, inferring the architecture from tensor shapes.

Files load with `torch.load(weights_only=True)`: a pickle can run code, a weights-only load cannot. Anything
wrong with a file becomes one `CheckpointError` line that names the file and the first offending keys.
The authors' trajectory checkpoints carry stems for 1/4/5-channel inputs that RGB inference never runs; they are
dropped on purpose (`models.trajectory.UNUSED_STEM_PREFIXES`). Our own checkpoints are the same state dicts
plus one metadata entry under `METADATA_KEY`.

    python -m models.checkpoint FILE...   # what each file holds: net, architecture, parameters
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from models.restoration import RestorationNet
from models.trajectory import UNUSED_STEM_PREFIXES, TrajectoryNet

METADATA_KEY = "blur2seq_edge"
FORMAT_VERSION = 1
NETS: dict[str, type[nn.Module]] = {"trajectory": TrajectoryNet, "restoration": RestorationNet}
# A key only that net's state dict has: used to name the net a file actually holds.
_SIGNATURE_KEYS = {"trajectory": "inc_rgb.0.weight", "restoration": "p.m_head.weight"}
_SHOWN_KEYS = 3


class CheckpointError(ValueError):
    """A checkpoint file that cannot be loaded; the message is one line naming the file and the problem."""


def read_state_dict(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any] | None]:
    """The tensors of a checkpoint file and our metadata entry (None for the authors' files)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds for truncated, corrupt or unsafe pickles
        if "weights only load failed" in str(error).lower():
            reason = "it holds Python objects that a weights-only load refuses: not a plain state dict"
        else:
            detail = str(error).strip().splitlines()[0][:120] if str(error).strip() else type(error).__name__
            reason = f"truncated, corrupt or not a PyTorch file: {detail}"
        raise CheckpointError(f"{path}: cannot load checkpoint: {reason}") from None
    if not isinstance(content, dict):
        raise CheckpointError(f"{path}: holds a {type(content).__name__}, not a state dict")
    state = dict(content)
    metadata = state.pop(METADATA_KEY, None)
    not_tensors = [key for key, value in state.items() if not isinstance(value, Tensor)]
    if not_tensors:
        raise CheckpointError(f"{path}: not a state dict: entries {_first(not_tensors)} are not tensors")
    return state, metadata


def net_kind(state: dict[str, Tensor]) -> str | None:
    """Which of our nets a state dict belongs to, by its signature key, or None."""
    return next((kind for kind, key in _SIGNATURE_KEYS.items() if key in state), None)


def trajectory_architecture(state: dict[str, Tensor]) -> dict[str, Any]:
    """`TrajectoryNet` arguments read off the tensor shapes."""
    return {"n_positions": _shape(state, "roll_end.4.weight")[0], "nc1": _shape(state, "inc_rgb.0.weight")[0]}


def restoration_architecture(state: dict[str, Tensor]) -> dict[str, Any]:
    """`RestorationNet` arguments read off the tensor shapes."""
    n_weights = _shape(state, "h.mlp.4.weight")[0]
    block = re.compile(r"p\.m_down1\.(\d+)\.res\.0\.weight")
    nb = len({match.group(1) for key in state if (match := block.fullmatch(key))})
    nc = [_shape(state, "p.m_head.weight")[0]] + [_shape(state, f"p.m_down{k}.{nb}.weight")[0] for k in (1, 2, 3)]
    return {"n_iter": n_weights // 3 - 1, "h_nc": _shape(state, "h.mlp.0.weight")[0], "nc": nc, "nb": nb}


_ARCHITECTURE_READERS = {"trajectory": trajectory_architecture, "restoration": restoration_architecture}


def architecture_of(net: nn.Module) -> tuple[str, dict[str, Any]]:
    """The kind and constructor arguments of one of our nets."""
    if isinstance(net, TrajectoryNet):
        return "trajectory", {"n_positions": net.n_positions, "nc1": net.nc1}
    if isinstance(net, RestorationNet):
        return "restoration", {"n_iter": net.n_iter, "h_nc": net.h_nc, "nc": list(net.nc), "nb": net.nb}
    raise TypeError(f"not a Blur2Seq net: {type(net).__name__}")


def load_net(path: str | Path, kind: str | None = None) -> nn.Module:
    """Build the net a checkpoint holds, with its architecture inferred from the file, and load its weights.

    `kind` ("trajectory" or "restoration") makes a file of the other net an error; None accepts either.
    The returned net is in eval mode.
    """
    state, metadata = read_state_dict(path)
    found = net_kind(state)
    expected = kind or found
    if expected is None:
        signatures = " or ".join(_SIGNATURE_KEYS.values())
        raise CheckpointError(f"{path}: not a Blur2Seq state dict (no {signatures}; first keys {_first(state)})")
    if found is not None and found != expected:
        raise CheckpointError(f"{path}: holds a {found}-net state dict, expected the {expected} net")
    if metadata is not None:
        _check_metadata(path, metadata, expected)
    if expected == "trajectory":
        state = {key: value for key, value in state.items() if not key.startswith(UNUSED_STEM_PREFIXES)}
    try:
        architecture = _ARCHITECTURE_READERS[expected](state)
    except KeyError as missing:
        raise CheckpointError(f"{path}: not a {expected}-net state dict: missing {missing.args[0]}") from None
    try:
        net = NETS[expected](**architecture)
    except (ValueError, TypeError, RuntimeError) as error:
        raise CheckpointError(f"{path}: inconsistent {expected}-net shapes ({architecture}): {error}") from None
    _check_keys(path, expected, net.state_dict(), state)
    net.load_state_dict(state)
    return net.eval()


def load_trajectory_net(path: str | Path) -> TrajectoryNet:
    """A trajectory-net checkpoint (the authors' `.pkl` or ours) as a `TrajectoryNet` in eval mode."""
    net = load_net(path, "trajectory")
    assert isinstance(net, TrajectoryNet)
    return net


def load_restoration_net(path: str | Path) -> RestorationNet:
    """A restoration-net checkpoint (the authors' `.pkl` or ours) as a `RestorationNet` in eval mode."""
    net = load_net(path, "restoration")
    assert isinstance(net, RestorationNet)
    return net


def save_checkpoint(net: nn.Module, path: str | Path) -> None:
    """Write the net's state dict plus our metadata entry, atomically (temp file + rename)."""
    kind, architecture = architecture_of(net)
    content: dict[str, Any] = dict(net.state_dict())
    content[METADATA_KEY] = {"format_version": FORMAT_VERSION, "net": kind, "architecture": architecture}
    atomic_torch_save(content, Path(path))


def atomic_torch_save(content: Any, path: Path) -> None:
    """`torch.save` to a temporary file beside `path`, renamed into place: never a half-written file."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(content, file)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _shape(state: dict[str, Tensor], key: str) -> tuple[int, ...]:
    return tuple(state[key].shape)


def _first(keys: Any) -> str:
    keys = list(keys)
    shown = ", ".join(keys[:_SHOWN_KEYS])
    return shown + (f" (+{len(keys) - _SHOWN_KEYS} more)" if len(keys) > _SHOWN_KEYS else "")


def _check_metadata(path: str | Path, metadata: Any, kind: str) -> None:
    if not isinstance(metadata, dict) or metadata.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: unknown {METADATA_KEY} metadata (expected format_version {FORMAT_VERSION})")
    if metadata.get("net") != kind:
        raise CheckpointError(f"{path}: metadata says {metadata.get('net')!r} net, expected the {kind} net")


def _check_keys(path: str | Path, kind: str, expected: dict[str, Tensor], found: dict[str, Tensor]) -> None:
    missing = [key for key in expected if key not in found]
    unexpected = [key for key in found if key not in expected]
    misshaped = [
        f"{key} {tuple(found[key].shape)} vs {tuple(value.shape)}"
        for key, value in expected.items()
        if key in found and found[key].shape != value.shape
    ]
    problems = [
        f"{label} {_first(keys)}"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped (file vs net)", misshaped))
        if keys
    ]
    if problems:
        raise CheckpointError(f"{path}: does not match the {kind} net: " + "; ".join(problems))


def _describe(path: str) -> str:
    net = load_net(path)
    kind, architecture = architecture_of(net)
    parameters = sum(parameter.numel() for parameter in net.parameters())
    return f"{path}: {kind} net {architecture}, {parameters / 1e6:.2f}M parameters"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.checkpoint", description="Describe checkpoint files.")
    parser.add_argument("files", nargs="+", help="checkpoint files (the authors' .pkl or ours)")
    failures = 0
    for file in parser.parse_args(argv).files:
        try:
            print(_describe(file))
        except CheckpointError as error:
            print(f"error: {error}", file=sys.stderr)
            failures += 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
