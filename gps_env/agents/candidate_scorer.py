"""A permutation-equivariant SB3 actor-critic for :class:`~gps_env.wrappers.CandidateWindow` windows.

Needs stable-baselines3 (the ``sb3`` extra); :mod:`gps_env.agents.learned` imports this module only when a
scorer policy is built or loaded, so ``import gps_env.agents`` does not need SB3.

    from stable_baselines3 import PPO
    from gps_env.agents.candidate_scorer import CandidateScorerPolicy
    model = PPO(CandidateScorerPolicy, CandidateWindow(sim_env), policy_kwargs={"hidden": 32}).learn(60_000)
"""

from __future__ import annotations

from typing import Any

import torch
from stable_baselines3.common.policies import ActorCriticPolicy
from torch import nn


class CandidateScorerNet(nn.Module):
    """SB3's ``mlp_extractor`` slot: per-candidate scores (the actor) and a pooled critic latent.

    Takes the flattened (N, M·F) window, views it as (N, M, F) and applies the same F→h→h→1 MLP to every
    candidate row (``latent_pi``: the M mean scores) and a second F→h→h MLP to every row, mean-pooled over
    candidates (``latent_vf``, size h; permutation-invariant).
    """

    def __init__(self, n_candidates: int, n_features: int, hidden: int, activation_fn: type[nn.Module]) -> None:
        super().__init__()
        self.n_candidates, self.n_features = n_candidates, n_features
        self.latent_dim_pi, self.latent_dim_vf = n_candidates, hidden
        self.policy_net = nn.Sequential(nn.Linear(n_features, hidden), activation_fn(),
                                        nn.Linear(hidden, hidden), activation_fn(), nn.Linear(hidden, 1))
        self.value_net = nn.Sequential(nn.Linear(n_features, hidden), activation_fn(),
                                       nn.Linear(hidden, hidden), activation_fn())

    def _rows(self, features: torch.Tensor) -> torch.Tensor:
        return features.reshape(-1, self.n_candidates, self.n_features)

    def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
        return self.policy_net(self._rows(features)).squeeze(-1)

    def forward_critic(self, features: torch.Tensor) -> torch.Tensor:
        return self.value_net(self._rows(features)).mean(dim=1)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_actor(features), self.forward_critic(features)


class CandidateScorerPolicy(ActorCriticPolicy):
    """A permutation-equivariant actor-critic over (M, F) candidate windows.

    Actor: one shared F→h→h→1 MLP gives each candidate's mean score, so permuting the candidates permutes
    the scores and one rule is learnt for all M positions (SB3's flat ``"MlpPolicy"`` over the M·F window has
    to learn it M times); the Gaussian has one shared log-std (a scalar, expanded to the M scores). Critic: a
    shared per-candidate F→h→h MLP, mean-pooled over candidates, then a linear value head. ``net_arch`` is
    ignored; ``hidden`` is h.
    """

    def __init__(self, observation_space, action_space, lr_schedule, *args: Any, hidden: int = 32,
                 **kwargs: Any) -> None:
        shape = tuple(observation_space.shape)
        if len(shape) != 2 or tuple(action_space.shape) != shape[:1]:
            raise ValueError(f"needs (M, F) observations and (M,) actions, got {shape} and "
                             f"{tuple(action_space.shape)}")
        if kwargs.get("use_sde"):
            raise ValueError("CandidateScorerPolicy does not support gSDE (use_sde=True)")
        self.hidden = int(hidden)
        super().__init__(observation_space, action_space, lr_schedule, *args, **kwargs)

    def _build_mlp_extractor(self) -> None:
        m, f = self.observation_space.shape
        self.mlp_extractor = CandidateScorerNet(m, f, self.hidden, self.activation_fn).to(self.device)

    def _build(self, lr_schedule) -> None:
        super()._build(lr_schedule)  # a Linear(M, M) action_net and M log-stds, replaced here
        self.action_net = nn.Identity()
        self.log_std = nn.Parameter(torch.full((1,), float(self.log_std_init)), requires_grad=True)
        if self.ortho_init:  # SB3 gives the action layer gain 0.01: here the scorer's last layer
            self.init_weights(self.mlp_extractor.policy_net[-1], gain=0.01)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "hidden": self.hidden}
