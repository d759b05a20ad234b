"""One run of one selector under the rollout budget, and the run files of a benchmark directory.

``runs/<selector>-seed<k>.jsonl`` holds one JSON line per step and per evaluation, between a ``start`` line and,
once the run finished, an ``end`` line; ``runs/<selector>-seed<k>.error.json`` records a run that raised.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gps_env.agents.registry import SELECTORS
from gps_env.bench.config import LEGACY_ENGINE, BenchConfig, as_config

__all__ = [
    "LEGACY_ENGINE", "build_env", "checkpoints_for", "json_safe", "load_errors", "load_runs", "read_run",
    "resolved_engine", "run_name", "run_one", "write_atomic",
]

_ERROR_NAME = re.compile(r"^(?P<selector>.+)-seed(?P<seed>-?\d+)\.error\.json$")


def run_name(selector: str, seed: int) -> str:
    return f"{selector}-seed{seed}"


def read_run(path: Path) -> dict | None:
    """The run record in ``path``, or None if the file is missing, unreadable or not finished."""
    try:
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return None
    if not lines or lines[0].get("type") != "start" or lines[-1].get("type") != "end":
        return None
    start = lines[0]
    return {
        "selector": start["selector"], "seed": start["seed"],
        "steps": [x for x in lines if x["type"] == "step"],
        "evals": [x for x in lines if x["type"] == "eval"],
        "end": lines[-1],
    }


def load_runs(out: Path, selectors: Sequence[str], seeds: Sequence[int]) -> list[dict]:
    """The finished runs of ``out`` among ``selectors`` x ``seeds`` (seed-major order)."""
    runs = []
    for seed in seeds:
        for s in selectors:
            rec = read_run(out / "runs" / f"{run_name(s, seed)}.jsonl")
            if rec is not None:
                runs.append(rec)
    return runs


def load_errors(out: Path) -> list[dict]:
    """Every error record of ``out``; an unreadable one still names its run, selector and seed."""
    errors = []
    for path in sorted((out / "runs").glob("*.error.json")):
        try:
            errors.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            record: dict[str, Any] = {"run": path.name, "error": "unreadable error file"}
            match = _ERROR_NAME.match(path.name)
            if match:
                record.update(run=run_name(match["selector"], int(match["seed"])), selector=match["selector"],
                              seed=int(match["seed"]))
            errors.append(record)
    return errors


def json_safe(x: Any) -> Any:
    """``x`` with non-finite floats as None and numpy scalars as Python ones (strict JSON)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, Mapping):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, np.generic):
        return json_safe(x.item())
    return x


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file, so readers never see half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def checkpoints_for(budget: int, every: int) -> list[int]:
    return [*range(every, budget, every), budget]


def run_one(env: Any, selector: str, seed: int, budget: int, every: int, path: Path,
            start_evals: dict[int, dict] | None = None) -> dict:
    """Run ``selector`` from a fresh episode until ``budget`` selector rollouts, streaming lines to ``path``.

    ``start_evals`` (seed -> held-out result), shared by the runs of one ``env``, holds each seed's evaluation at
    step 0: it depends only on the warm start, the held-out set and the episode's evaluation seed, never on the
    selector, so later runs of that seed reuse it (``"shared": true`` in their eval line, and no eval rollouts
    charged to their ledger for it) instead of sampling the same held-out rollouts again.
    """
    from tqdm.auto import tqdm

    checkpoints = checkpoints_for(budget, every)
    with path.open("w") as f:
        def emit(record: dict) -> None:
            f.write(json.dumps(json_safe(record)) + "\n")
            f.flush()

        import torch  # the env has imported it already

        # torch's thread count changes the summation order of some CPU kernels (GPS's PPM update among them),
        # so a run replays bit for bit only with the same count: it is recorded with the run
        emit({"type": "start", "selector": selector, "seed": seed, "budget": budget,
              "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "torch_threads": torch.get_num_threads()})
        agent = SELECTORS[selector](env, seed)
        obs, _ = env.reset(seed=seed)
        start = time.perf_counter()
        ledger = env.ledger

        def evaluate(checkpoint_list: list[int], step: int) -> None:
            shared = step == 0 and start_evals is not None and seed in start_evals
            result = start_evals[seed] if shared else env.evaluate()
            if step == 0 and start_evals is not None:
                start_evals.setdefault(seed, result)
            sec = ledger.seconds
            selector_seconds = sum(sum(sec[p].values()) for p in ("train", "probe"))
            for c in checkpoint_list:
                emit({"type": "eval", "checkpoint": c, "step": step, "rollouts": ledger.selector_rollouts,
                      "accuracy": result["accuracy"], "by_task": result["by_task"],
                      "selector_seconds": selector_seconds, "wall_seconds": time.perf_counter() - start,
                      **({"shared": True} if shared else {})})

        evaluate([0], 0)
        nxt = 0
        with tqdm(total=budget, desc=run_name(selector, seed), leave=False, unit="rollout") as bar:
            while ledger.selector_rollouts < budget:
                before_r = ledger.selector_rollouts
                before = {p: dict(v) for p, v in ledger.seconds.items()}
                obs, esr, _, _, info = env.step(agent.act(obs))
                spent = ledger.selector_rollouts - before_r
                if spent <= 0:
                    raise RuntimeError(f"step {info['step']} spent no selector rollouts; the run cannot finish")
                d = {p: {ph: ledger.seconds[p][ph] - before[p][ph] for ph in ledger.seconds[p]} for p in before}
                emit({"type": "step", "step": info["step"], "rollouts": ledger.selector_rollouts, "esr": esr,
                      "spearman": info.get("spearman"), "calibration_error": info.get("calibration_error"),
                      "mean_reward": info.get("mean_reward"),
                      "seconds": {"generate": d["train"]["generate"], "verify": d["train"]["verify"],
                                  "update": d["train"]["update"], "select": d["train"]["select"],
                                  "probe": sum(d["probe"].values())}})
                bar.update(spent)
                due = []
                while nxt < len(checkpoints) and ledger.selector_rollouts >= checkpoints[nxt]:
                    due.append(checkpoints[nxt])
                    nxt += 1
                if due:
                    evaluate(due, info["step"])
        if nxt < len(checkpoints):  # only if the loop exited without reaching them (cannot happen)
            evaluate(checkpoints[nxt:], int(obs["step"][0]))
        end = {"type": "end", "steps": int(obs["step"][0]), "rollouts": ledger.selector_rollouts,
               "wall_seconds": time.perf_counter() - start, "ledger": ledger.summary()}
        emit(end)
    return read_run(path)


def build_env(config: BenchConfig | Mapping[str, Any]) -> Any:
    """The embedded-LM env of a benchmark configuration (a :class:`BenchConfig` or a ``config.json`` dict)."""
    from gps_env.env import PromptSelectionEnv

    config = as_config(config)
    return PromptSelectionEnv(
        batch_size=config.batch_size, rollouts_per_prompt=config.k, max_steps=10**9,
        pool_size=config.pool_size, heldout_size=config.heldout_size, eval_every=0,
        task_mix=config.task_mix, policy=config.policy, world_seed=config.world_seed, engine=config.engine,
    )


def resolved_engine(requested: str, config: BenchConfig | Mapping[str, Any]) -> str:
    """What ``--engine`` means for this benchmark's policy: ``"vllm"`` or ``"transformers"``."""
    import importlib.util

    if requested != "auto":
        return requested
    if importlib.util.find_spec("vllm") is None:
        return "transformers"
    from transformers import AutoConfig

    from gps_env.engines import resolve_engine
    from gps_env.policy import default_policy, warm_start

    policy = config["policy"] if isinstance(config, Mapping) else config.policy
    task_mix = config["task_mix"] if isinstance(config, Mapping) else config.task_mix
    path = policy or warm_start(default_policy(task_mix))
    return resolve_engine(requested, AutoConfig.from_pretrained(path))
