"""How much can a selector know without probing? The ceiling of selection signals in a world.

    python benchmarks/signal_ceiling.py --world reasoning-gym --seeds 0 1 2 --steps 100 --at 0 60 \\
        --out docs/results/signal_ceiling_rg_v1.json

``benchmarks/headroom.py`` measures what selection by pass rate can buy when finding the mixed groups is
free (a bound). This measures how much of that a selector can see, signal by signal, on one uniform run
per seed (no selector's own choices feed back, so every signal is scored on the same prompts):

1. **Replayed predictors.** The run records every batch and its outcomes. Each predictor replays that
   history in order and, before it sees step t's batch, scores the batch. Uniform's batches are random
   draws from the pool, so how well a predictor ranks them is how well it ranks random candidates. Per
   window of steps: uniform's ESR; the ESR of the quarter of each batch the predictor rates most
   informative by GPS's utility −(γ̂ − 0.5)² (what picking B of 4B random candidates with that predictor
   and no diversity term could reach); the Spearman of γ̂ with the observed success; the Brier score.
   Predictors: GPS's PPM (``gps_env.agents.GPS``, its defaults); the PPM with 8 ELBO updates over the
   last 16 batches; the cosine k-nearest seen prompts' mean success (k = 32); and, **privileged**, the
   mean success of the prompt's task over the last 5 steps (a selector is not told the task).
2. **Sampled signals.** At the steps ``--at`` of the same run, ``--sample`` random pool prompts get k
   rollouts twice and one rollout more, outside the env's generator and ledger (the run goes on exactly
   as without them). The first draw says which groups are mixed; each signal is scored on it by AUC and by
   the ESR of the best B of 4B random candidates: the second draw (what a charged k-rollout probe knows),
   the task's mean success on the second draw (privileged), the extra rollout's reward (a 1-rollout
   probe), and that rollout's sequence probability q read as 1 − |2q − 1| (ours: a policy readout; the
   embedded worlds' policies answer without a chain of thought, so one answer's probability is close to
   the prompt's success rate when the answer is right, and far from 1/2 when the policy is sure).
"""

from __future__ import annotations

import argparse
import json
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from gps_env import PromptSelectionEnv
from gps_env.agents import GPS, Uniform
from gps_env.bench.config import WORLDS
from gps_env.spec import AgentSpec

Predictor = tuple[Callable[[np.ndarray, np.ndarray, int], None], Callable[[np.ndarray], np.ndarray]]


def gps_predictor(env: PromptSelectionEnv, seed: int, ppm: dict | None = None) -> Predictor:
    """GPS's PPM fed the recorded observations through the agent's own ``observe``."""
    agent = GPS(env, seed, ppm=ppm)

    def observe(batch: np.ndarray, rewards: np.ndarray, step: int) -> None:
        agent.observe({"last_batch": batch, "last_rewards": rewards, "step": np.array([step])})

    return observe, lambda batch: agent.predict_for(agent.embeddings[batch])


def knn_predictor(embeddings: np.ndarray, k: int = 32) -> Predictor:
    """The mean success of the k seen prompts nearest by cosine (0.5 before any)."""
    seen: list[np.ndarray] = []
    success: list[np.ndarray] = []

    def observe(batch: np.ndarray, rewards: np.ndarray, step: int) -> None:
        seen.append(batch)
        success.append(rewards.mean(axis=1))

    def predict(batch: np.ndarray) -> np.ndarray:
        if not seen:
            return np.full(len(batch), 0.5)
        ids, rates = np.concatenate(seen), np.concatenate(success)
        similarity = embeddings[batch] @ embeddings[ids].T
        nearest = min(k, len(ids))
        top = np.argpartition(-similarity, nearest - 1, axis=1)[:, :nearest]
        return rates[top].mean(axis=1)

    return observe, predict


def task_predictor(tasks: np.ndarray, window: int = 5) -> Predictor:
    """Privileged: the mean success of the prompt's task over the last ``window`` batches (0.5 if unseen)."""
    recent: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=window)

    def observe(batch: np.ndarray, rewards: np.ndarray, step: int) -> None:
        recent.append((tasks[batch], rewards.mean(axis=1)))

    def predict(batch: np.ndarray) -> np.ndarray:
        if not recent:
            return np.full(len(batch), 0.5)
        seen_tasks = np.concatenate([t for t, _ in recent])
        rates = np.concatenate([r for _, r in recent])
        means = {t: rates[seen_tasks == t].mean() for t in np.unique(seen_tasks)}
        return np.array([means.get(t, 0.5) for t in tasks[batch]])

    return observe, predict


def is_mixed(rewards: np.ndarray) -> np.ndarray:
    rate = rewards.mean(axis=1)
    return (rate > 0) & (rate < 1)


def replay(batches: np.ndarray, rewards: np.ndarray, predictor: Predictor, window: int) -> dict[str, list[float]]:
    """Score each recorded batch before the predictor sees it; means per window of steps (step 1 on)."""
    observe, predict = predictor
    rows = []
    for step, (batch, reward) in enumerate(zip(batches, rewards)):
        if step:
            gamma, rate, mixed = predict(batch), reward.mean(axis=1), is_mixed(reward)
            best = np.argsort((gamma - 0.5) ** 2, kind="stable")[: len(batch) // 4]
            varied = gamma.std() > 0 and rate.std() > 0
            rho = stats.spearmanr(gamma, rate).statistic if varied else np.nan
            rows.append((step, mixed.mean(), mixed[best].mean(), rho, np.mean((gamma - rate) ** 2)))
        observe(batch, reward, step)
    table = np.array(rows)
    windows = [(lo, lo + window) for lo in range(0, len(batches), window)]
    out: dict[str, list[float]] = {"esr": [], "best_quarter_esr": [], "spearman": [], "brier": []}
    for lo, hi in windows:
        part = table[(table[:, 0] >= lo) & (table[:, 0] < hi)]
        for key, column in zip(out, range(1, 5)):
            out[key].append(float(np.nanmean(part[:, column])))
    return out


def auc(mixed: np.ndarray, score: np.ndarray) -> float:
    """P(a mixed prompt scores above an unmixed one), ties counted half (the Mann–Whitney AUC)."""
    return float(stats.mannwhitneyu(score[mixed], score[~mixed]).statistic / (mixed.sum() * (~mixed).sum()))


def best_of(mixed: np.ndarray, score: np.ndarray, batch: int, candidates: int, rng: np.random.Generator,
            draws: int = 2000) -> float:
    """Mean ESR of the ``batch`` best-scored of ``candidates`` random prompts (ties: the first drawn)."""
    picks = []
    for _ in range(draws):
        drawn = rng.choice(len(mixed), candidates, replace=False)
        picks.append(mixed[drawn[np.argsort(-score[drawn], kind="stable")[:batch]]].mean())
    return float(np.mean(picks))


def sampled_signals(env: PromptSelectionEnv, tasks: np.ndarray, size: int, seed: int, step: int) -> dict:
    """Score each sampled signal against the mixedness of a first k-rollout draw on ``size`` random prompts."""
    rng = np.random.default_rng([seed, step])
    ids = rng.choice(len(env.pool), size, replace=False)
    generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
    prompts = [env.pool[int(i)].prompt for i in ids]

    def draw(n: int):
        rollouts = env.engine.generate(prompts, n, env.sampling, generator)
        rewards = [env.pool.verify(int(ids[r // n]), text) for r, text in enumerate(rollouts.texts)]
        return np.asarray(rewards, dtype=float).reshape(size, n), rollouts

    first, _ = draw(env.k)
    second, _ = draw(env.k)
    one, rollouts = draw(1)
    q = np.exp([float(np.sum(lp)) for lp in rollouts.logprobs])
    mixed = is_mixed(first)
    rate = second.mean(axis=1)
    means = {t: rate[tasks[ids] == t].mean() for t in np.unique(tasks[ids])}
    signals = {
        "second k-rollout draw (a probe)": is_mixed(second) - 1e-3 * np.abs(rate - 0.5),
        "task mean, second draw (privileged)": -np.abs(np.array([means[t] for t in tasks[ids]]) - 0.5),
        "one rollout's reward": one[:, 0],
        "one rollout's probability, 1-|2q-1| (ours)": 1 - np.abs(2 * q - 1),
    }
    b = env.batch_size
    return {"step": step, "mixed": float(mixed.mean()),
            "signals": {name: {"auc": auc(mixed, s), "best_of_4b_esr": best_of(mixed, s, b, 4 * b, rng)}
                        for name, s in signals.items()}}


def run_seed(env: PromptSelectionEnv, seed: int, steps: int, at: list[int], size: int) -> dict:
    agent = Uniform(env, seed)
    obs, _ = env.reset(seed=seed)
    tasks = np.array([p.task for p in env.pool.problems])
    batches, rewards, sampled = [], [], []
    for step in range(steps):
        if step in at:
            sampled.append(sampled_signals(env, tasks, size, seed, step))
        obs, *_ = env.step(agent.act(obs))
        batches.append(np.asarray(obs["last_batch"]).copy())
        rewards.append(np.asarray(obs["last_rewards"]).copy())
    return {"batches": np.array(batches), "rewards": np.array(rewards), "tasks": tasks, "sampled": sampled}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", choices=sorted(WORLDS), default="reasoning-gym")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--window", type=int, default=25)
    parser.add_argument("--at", type=int, nargs="*", default=[0, 60], help="steps of the sampled signals")
    parser.add_argument("--sample", type=int, default=1024, help="prompts per sampled-signal measurement")
    parser.add_argument("--engine", default="transformers")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args()
    if args.steps % args.window or any(not 0 <= s < args.steps for s in args.at):
        parser.error("--steps must be a multiple of --window and every --at step in [0, --steps)")
    torch.set_num_threads(1)  # the tiny policy is faster on one thread on a shared 2-core machine
    env = PromptSelectionEnv(batch_size=32, max_steps=10**9, eval_every=0, progress=False, engine=args.engine,
                             **WORLDS[args.world])
    if args.sample > len(env.pool) or args.sample < 4 * env.batch_size:
        parser.error(f"--sample must be in [{4 * env.batch_size}, {len(env.pool)}]")
    embeddings = AgentSpec.of(env).embeddings
    names = ["GPS's PPM (default)", "PPM, 8 updates over 16 batches", "cosine 32-NN of seen prompts",
             "task mean, last 5 steps (privileged)"]
    replayed: dict[str, list[dict]] = {name: [] for name in names}
    sampled: list[dict] = []
    for seed in args.seeds:
        start = time.perf_counter()
        record = run_seed(env, seed, args.steps, args.at, args.sample)
        predictors = [gps_predictor(env, seed), gps_predictor(env, seed, {"updates": 8, "replay": 16}),
                      knn_predictor(embeddings), task_predictor(record["tasks"])]
        for name, predictor in zip(names, predictors):
            replayed[name].append(replay(record["batches"], record["rewards"], predictor, args.window))
        sampled.extend({"seed": seed, **s} for s in record["sampled"])
        print(f"seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)

    def mean(name: str, key: str) -> np.ndarray:
        return np.mean([r[key] for r in replayed[name]], axis=0)

    print(f"\n{args.world}, seeds {args.seeds}, B = {env.batch_size}, k = {env.k}: replayed predictors on uniform's "
          f"batches, per {args.window}-step window")
    print(f"  {'uniform ESR (every batch)':42s} {' '.join(f'{v:.2f}' for v in mean(names[0], 'esr'))}")
    for name in names:
        print(f"  {name:42s} best quarter ESR {' '.join(f'{v:.2f}' for v in mean(name, 'best_quarter_esr'))}"
              f"   Spearman {' '.join(f'{v:.2f}' for v in mean(name, 'spearman'))}"
              f"   Brier {np.mean(mean(name, 'brier')):.4f}")
    print(f"\nsampled signals, {args.sample} random prompts, mixed = a first k-rollout draw; seed means")
    for step in args.at:
        rows = [s for s in sampled if s["step"] == step]
        print(f"  step {step}: mixed share {np.mean([r['mixed'] for r in rows]):.2f}")
        for name in rows[0]["signals"]:
            auc_mean = np.mean([r["signals"][name]["auc"] for r in rows])
            esr = np.mean([r["signals"][name]["best_of_4b_esr"] for r in rows])
            print(f"    {name:45s} AUC {auc_mean:.3f}   ESR of the best B of 4B {esr:.2f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"world": args.world, "seeds": args.seeds, "steps": args.steps,
                                        "window": args.window, "replayed": replayed, "sampled": sampled}, indent=1))


if __name__ == "__main__":
    main()
