"""Validation of a GPS state's torch parts (the PPM's parameters and its Adam state) before anything is restored."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from gps_env.agents.base import check_number, describe, finite_real


def check_model_state(value: Any, model: torch.nn.Module, latent_mode: str) -> None:
    """``value`` is a state dict of ``model`` (GPS's PPM): the same parameter names, shapes and dtypes, finite."""
    own = model.state_dict()
    if not isinstance(value, Mapping):
        raise ValueError(f"state 'model' must be the PPM's state dict, got {type(value).__name__}")
    missing, extra = sorted(set(own) - set(value)), sorted(map(str, set(value) - set(own)))
    if missing or extra:
        raise ValueError(f"state 'model' is not this PPM's (latent_mode={latent_mode!r}): "
                         f"missing {missing[:4]}, unknown {extra[:4]}")
    for name, mine in own.items():
        check_tensor(f"model {name!r}", value[name], mine)


def check_tensor(name: str, value: Any, like: torch.Tensor, low: float | None = None) -> None:
    """``value`` is a tensor like ``like`` (shape, dtype), finite if floating, and at least ``low`` if given."""
    if not isinstance(value, torch.Tensor) or value.shape != like.shape or value.dtype != like.dtype:
        got = (f"{value.dtype} {tuple(value.shape)}" if isinstance(value, torch.Tensor)
               else type(value).__name__)
        raise ValueError(f"state {name} must be a {like.dtype} tensor of shape {tuple(like.shape)}, got {got}")
    if value.is_floating_point() and not bool(torch.isfinite(value).all()):
        raise ValueError(f"state {name} contains NaN or inf")
    if low is not None and value.numel() and bool((value < low).any()):
        raise ValueError(f"state {name} has values below {low}")


def check_optimizer_state(value: Any, optimizer: torch.optim.Optimizer) -> None:
    """``value`` is an Adam state dict for ``optimizer``'s parameters (ids, shapes, hyperparameters)."""
    own = optimizer.state_dict()
    if not isinstance(value, Mapping) or set(value) != {"state", "param_groups"}:
        raise ValueError("state 'optimizer' must be the Adam state dict ('state', 'param_groups') of the PPM")
    groups = value["param_groups"]
    if not isinstance(groups, list | tuple) or len(groups) != len(own["param_groups"]):
        raise ValueError(f"state 'optimizer' must have {len(own['param_groups'])} parameter group(s)")
    params: dict[Any, torch.Tensor] = {}
    for group, mine, live in zip(groups, own["param_groups"], optimizer.param_groups):
        if not isinstance(group, Mapping) or list(group.get("params", ())) != mine["params"]:
            raise ValueError("state 'optimizer' is for other parameters than this PPM's")
        params.update(zip(mine["params"], live["params"]))
        for key, default in mine.items():
            if key == "params" or key not in group:
                continue
            if not _like(group[key], default):
                raise ValueError(f"state 'optimizer' hyperparameter {key!r} is {describe(group[key])}, not like "
                                 f"{describe(default)}")
        check_number("state 'optimizer' lr", group.get("lr", mine["lr"]), 0.0, low_open=True)
        for key in ("amsgrad", "capturable", "differentiable", "fused"):  # they change what the state holds
            if key in group and group[key] != mine.get(key):
                raise ValueError(f"state 'optimizer' has {key}={describe(group[key])}, this PPM's Adam "
                                 f"{describe(mine.get(key))}")
    entries = value["state"]
    if not isinstance(entries, Mapping) or not set(entries) <= set(params):
        raise ValueError("state 'optimizer' holds state for parameters this PPM does not have")
    for pid, entry in entries.items():
        if not isinstance(entry, Mapping) or set(entry) != {"step", "exp_avg", "exp_avg_sq"}:
            raise ValueError(f"state 'optimizer' entry {pid} must hold Adam's 'step', 'exp_avg', 'exp_avg_sq'")
        check_tensor(f"optimizer[{pid}] 'exp_avg'", entry["exp_avg"], params[pid])
        check_tensor(f"optimizer[{pid}] 'exp_avg_sq'", entry["exp_avg_sq"], params[pid], low=0.0)
        step = entry["step"]
        step = step.item() if isinstance(step, torch.Tensor) and step.numel() == 1 else step
        check_number(f"optimizer[{pid}] 'step'", step, 0.0)


def _like(value: Any, default: Any) -> bool:
    """An optimizer hyperparameter of the same kind as ours (a bool, a number, a tuple of numbers, None)."""
    if isinstance(default, bool) or default is None:
        return value is None or isinstance(value, bool)
    if isinstance(default, tuple | list):
        return (isinstance(value, tuple | list) and len(value) == len(default)
                and all(finite_real(v) is not None for v in value))
    if isinstance(default, int | float):
        return finite_real(value) is not None
    return True
