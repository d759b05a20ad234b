"""Train a selector with PPO (Stable-Baselines3) on the simulated world, save it, and check it there.

    OMP_NUM_THREADS=1 python benchmarks/train_learned_selector.py --out gps_env/agents/pretrained/ppo_selector
    OMP_NUM_THREADS=1 python benchmarks/train_learned_selector.py --forgetting-fit \
        --out gps_env/agents/pretrained/ppo_selector_forgetting    # on the sim with the fitted forgetting

The simulated world (``gps_env/SimulatedPromptSelection-v0``) is shaped like the embedded one (1,000
prompts, B = 32, k = 8, 300 steps per episode), so one episode is one simulated training run and the reward
is the effective-sample ratio. PPO learns on the :class:`~gps_env.wrappers.CandidateWindow` view (4B random
candidates, per-prompt statistics). ``--policy scorer`` (the default) is
:class:`~gps_env.agents.candidate_scorer.CandidateScorerPolicy`: one shared MLP scores every candidate's feature row
(permutation-equivariant) and a mean-pooled critic; ``--policy mlp`` is SB3's flat ``"MlpPolicy"`` (2×64 over
the flattened window), kept for comparison. The policy is saved as safetensors + JSON (``--out``) for
``LearnedSelector``; ``gps-env bench --selectors ppo`` evaluates it in the embedded world.

Prints the mean ESR and final held-out success of PPO, Uniform and MoPPS (its defaults: 16B candidates) over
evaluation episodes in the simulated world (seeds not used in training), with the ratios to Uniform.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from gps_env.agents import LearnedSelector, MoPPS, Uniform
from gps_env.agents.learned import save_policy
from gps_env.simulated import SimConfig, SimulatedPromptSelectionEnv
from gps_env.wrappers import CandidateWindow

#: The arithmetic world's fit with negative transfer and forgetting (docs/simulated.md, "Forgetting":
#: ``benchmarks/sim_forgetting.py --world arithmetic``): η_s, Λ₀, λ, ζ.
FORGETTING_FIT = {"semantic_rate": 0.08508, "plasticity": 16.07, "interference": 0.08634, "forgetting": 0.0006515}


def world(seed: int = 0, config: SimConfig | None = None) -> SimulatedPromptSelectionEnv:
    return SimulatedPromptSelectionEnv(batch_size=32, rollouts_per_prompt=8, max_steps=300, pool_size=1000,
                                       heldout_size=400, eval_every=0, world_seed=seed, time_in_info=False,
                                       config=config)


def evaluate(agent_factory, seeds: list[int], config: SimConfig | None = None) -> tuple[float, float]:
    esr, final = [], []
    for seed in seeds:
        env = world(config=config)
        agent = agent_factory(env, seed)
        obs, _ = env.reset(seed=seed)
        truncated, rewards = False, []
        while not truncated:
            obs, reward, _, truncated, _ = env.step(agent.act(obs))
            rewards.append(reward)
        esr.append(float(np.mean(rewards)))
        final.append(env.evaluate()["accuracy"])
    return float(np.mean(esr)), float(np.mean(final))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", choices=["scorer", "mlp"], default="scorer")
    parser.add_argument("--timesteps", type=int, default=60_000)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--n-steps", type=int, default=600)
    parser.add_argument("--ent-coef", type=float, default=0.0)
    parser.add_argument("--gamma", type=float, default=0.99)
    parser.add_argument("--log-std-init", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-seeds", type=int, nargs="+", default=[100, 101, 102])
    parser.add_argument("--out", type=Path, default=Path("gps_env/agents/pretrained/ppo_selector"))
    parser.add_argument("--forgetting-fit", action="store_true",
                        help="train (and evaluate) on the simulated world with the fitted forgetting (FORGETTING_FIT)")
    args = parser.parse_args()
    config = SimConfig(**FORGETTING_FIT) if args.forgetting_fit else None
    torch.set_num_threads(1)
    from stable_baselines3 import PPO

    from gps_env.agents.candidate_scorer import CandidateScorerPolicy

    env = CandidateWindow(world(config=config), candidates=4)
    if args.policy == "scorer":
        policy, policy_kwargs = CandidateScorerPolicy, {"hidden": 32, "log_std_init": args.log_std_init}
    else:
        policy, policy_kwargs = "MlpPolicy", {"net_arch": [64, 64], "log_std_init": args.log_std_init}
    model = PPO(policy, env, n_steps=args.n_steps, batch_size=100, n_epochs=5, learning_rate=args.learning_rate,
                gamma=args.gamma, ent_coef=args.ent_coef, seed=args.seed, device="cpu", verbose=0,
                policy_kwargs=policy_kwargs)
    start = time.perf_counter()
    model.learn(args.timesteps, progress_bar=False)
    print(f"PPO ({args.policy}): {args.timesteps} simulated steps in {time.perf_counter() - start:.0f} s")
    save_policy(model.policy, args.out)
    print(f"saved {args.out}/policy.safetensors")

    ppo = evaluate(lambda e, s: LearnedSelector(e, model.policy, seed=s, candidates=4), args.eval_seeds, config)
    uniform = evaluate(lambda e, s: Uniform(e, seed=s), args.eval_seeds, config)
    mopps = evaluate(lambda e, s: MoPPS(e, seed=s), args.eval_seeds, config)
    print(f"simulated world, {len(args.eval_seeds)} held-out episodes of 300 steps:")
    print(f"  uniform: mean ESR {uniform[0]:.3f}, final held-out success {uniform[1]:.3f}")
    for name, (esr, final) in (("mopps", mopps), ("ppo", ppo)):
        print(f"  {name + ':':8} mean ESR {esr:.3f} ({esr / uniform[0]:.2f}x), final held-out success {final:.3f} "
              f"({final - uniform[1]:+.3f})")


if __name__ == "__main__":
    main()
