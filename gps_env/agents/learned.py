"""A selector learnt by reinforcement learning (SB3 PPO) on the :class:`~gps_env.wrappers.CandidateWindow` view.

    from stable_baselines3 import PPO
    from gps_env.agents.candidate_scorer import CandidateScorerPolicy
    from gps_env.wrappers import CandidateWindow
    model = PPO(CandidateScorerPolicy, CandidateWindow(sim_env), seed=0).learn(50_000)
    save_policy(model.policy, "ppo_selector")            # safetensors weights + JSON spaces, no pickle
    agent = LearnedSelector(env, load_policy_file("ppo_selector"), seed=0)

Each step the agent draws M = ``candidates``·B prompts at random, computes their features from the shared
observation (:func:`gps_env.selectors.features.candidate_features`) and asks the policy for one score per
candidate (its deterministic action); the B highest-scored candidates are the batch. The policy never sees
embeddings or task names, only per-prompt statistics, so a policy trained in the simulated world runs
unchanged in the embedded one.

:class:`~gps_env.agents.candidate_scorer.CandidateScorerPolicy` (the shipped one) scores every candidate with
one shared small MLP, so it is permutation-equivariant: it learns one rule for all M positions instead of M
rules, as SB3's flat ``"MlpPolicy"`` over the (M·F) window would have to. That module needs stable-baselines3
and is imported only when a scorer is loaded, so ``import gps_env.agents`` does not.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from gps_env.agents.base import SelectorAgent
from gps_env.selectors import candidate_count, draw_candidates, top_scored
from gps_env.selectors.features import FEATURE_NAMES, candidate_features
from gps_env.spec import AgentSpec


class LearnedSelector(SelectorAgent):
    """Scores random candidates with a trained SB3 policy and keeps the top B.

    Args:
        env: the env to select for.
        policy: anything with SB3's ``predict(observation, deterministic=True) -> (action, state)``, trained
            on ``CandidateWindow`` observations of shape (M, len(FEATURE_NAMES)).
        seed: seeds the candidate draws.
        candidates: M as a multiple of B; must give the M the policy was trained with.

    State: ``rng`` and ``learnt_step`` (the policy is a setting, not state).
    """

    observation_keys = ("rollouts", "successes", "last_seen", "last_batch", "last_rewards")

    def __init__(self, env: gym.Env | AgentSpec, policy: Any, seed: int = 0, candidates: float = 4.0) -> None:
        super().__init__(env, seed)
        self.window = candidate_count(candidates, self.batch_size, self.pool_size, name="candidates")
        self._ratio = candidates  # as given: the window and the draws are computed from the same number
        self.candidates = float(candidates)
        if not callable(getattr(policy, "predict", None)):
            raise ValueError(f"policy must have SB3's predict(observation, deterministic=True), got "
                             f"{type(policy).__name__}")
        expected = (self.window, len(FEATURE_NAMES))
        shape = getattr(getattr(policy, "observation_space", None), "shape", expected)
        shape = tuple(shape) if isinstance(shape, tuple | list) else shape
        if shape != expected:
            raise ValueError(f"the policy takes observations of shape {shape}, but candidates={candidates} at "
                             f"B={self.batch_size} gives {expected}")
        self.policy = policy

    def select(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        candidates = draw_candidates(self.rng, self.pool_size, self.batch_size, self._ratio, name="candidates")
        scores, _ = self.policy.predict(candidate_features(obs, candidates), deterministic=True)
        return top_scored(candidates, scores, self.batch_size)


#: The PPO selector trained on the simulated world by ``benchmarks/train_learned_selector.py``, shipped in
#: the package (a ``CandidateScorerPolicy``: a shared 7→32→32→1 scorer per candidate, safetensors).
PRETRAINED = Path(__file__).with_name("pretrained") / "ppo_selector"
PRETRAINED_FORGETTING = PRETRAINED.with_name("ppo_selector_forgetting")


def pretrained(env: gym.Env | AgentSpec, seed: int = 0) -> LearnedSelector:
    """The shipped PPO selector as an agent on ``env`` (needs stable-baselines3)."""
    return LearnedSelector(env, load_policy_file(PRETRAINED), seed=seed, candidates=4.0)


def pretrained_forgetting(env: gym.Env | AgentSpec, seed: int = 0) -> LearnedSelector:
    """The shipped PPO selector trained on the simulated world with the fitted forgetting (docs/simulated.md)."""
    return LearnedSelector(env, load_policy_file(PRETRAINED_FORGETTING), seed=seed, candidates=4.0)


def save_policy(policy: Any, path: str | Path) -> Path:
    """Save an SB3 ``ActorCriticPolicy``: weights as ``path/policy.safetensors``, kind, spaces and net in JSON.

    ``kind`` is ``"scorer"`` for a :class:`CandidateScorerPolicy` (with its ``hidden`` size), else ``"mlp"``
    (SB3's ``"MlpPolicy"``, with its ``net_arch``).
    """
    from safetensors.torch import save_file

    from gps_env.agents.candidate_scorer import CandidateScorerPolicy

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in policy.state_dict().items()},
              path / "policy.safetensors")
    scorer = isinstance(policy, CandidateScorerPolicy)
    spec = {
        "kind": "scorer" if scorer else "mlp",
        "observation_shape": list(policy.observation_space.shape),
        "action_shape": list(policy.action_space.shape),
        "hidden": policy.hidden if scorer else None,
        "net_arch": None if scorer or not isinstance(policy.net_arch, (list, dict)) else policy.net_arch,
        "activation_fn": policy.activation_fn.__name__,
        "features": list(FEATURE_NAMES),
    }
    (path / "policy.json").write_text(json.dumps(spec, indent=1))
    return path


def load_policy_file(path: str | Path) -> Any:
    """Rebuild the policy saved by :func:`save_policy` (needs stable-baselines3; nothing is unpickled).

    Files without a ``kind`` (saved before the scorer existed) load as ``"mlp"``.
    """
    import torch
    from gymnasium import spaces
    from safetensors.torch import load_file
    from stable_baselines3.common.policies import ActorCriticPolicy

    path = Path(path)
    spec = json.loads((path / "policy.json").read_text())
    if spec["features"] != list(FEATURE_NAMES):
        raise ValueError(f"{path}: trained on features {spec['features']}, this gps-env has {list(FEATURE_NAMES)}")
    observation_space = spaces.Box(0.0, 1.0, tuple(spec["observation_shape"]), np.float32)
    action_space = spaces.Box(-1.0, 1.0, tuple(spec["action_shape"]), np.float32)
    activation_fn = getattr(torch.nn, spec["activation_fn"])
    kind = spec.get("kind", "mlp")
    if kind == "scorer":
        from gps_env.agents.candidate_scorer import CandidateScorerPolicy

        policy = CandidateScorerPolicy(observation_space, action_space, lambda _: 0.0, hidden=spec["hidden"],
                                       activation_fn=activation_fn)
    elif kind == "mlp":
        policy = ActorCriticPolicy(observation_space, action_space, lambda _: 0.0, net_arch=spec["net_arch"],
                                   activation_fn=activation_fn)
    else:
        raise ValueError(f"{path}: unknown policy kind {kind!r}")
    policy.load_state_dict(load_file(path / "policy.safetensors"))
    return policy.eval()
