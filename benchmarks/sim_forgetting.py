"""Fit the simulated world's forgetting (interference λ, forgetting ζ) to an embedded world, and check its ranking.

    python benchmarks/sim_forgetting.py --world arithmetic --out docs/results/sim_forgetting_arithmetic.txt
    python benchmarks/sim_forgetting.py --world rg --out docs/results/sim_forgetting_rg.txt

For one embedded head-to-head (``docs/results/h2h_arithmetic_new``: 1,000 prompts, 300 steps; ``h2h_rg``:
Reasoning Gym, 20,000 prompts, 100 steps; both B = 32, k = 8, 5 seeds):

1. **World.** Arithmetic: the calibrated :class:`SimConfig` (``benchmarks/sim_calibration.py``) with its two
   families named after the tasks. Reasoning Gym: one family per task, with the pool's task shares and a mean
   logit that gives the task's measured held-out accuracy at step 0 (within-family spread σ as calibrated;
   cosines 0.19 across and 0.72 within a task, ``docs/results/family_spread_rg.txt``).
2. **Fit** (Nelder–Mead from a fixed start, seeds ``--seeds``): η_s, Λ₀, λ and ζ to the per-task held-out
   accuracy *gains* at every embedded checkpoint of two selectors: uniform, and a narrow proxy that picks
   families in the measured shares of the embedded narrow selector (arithmetic: GPS, 81% Countdown;
   Reasoning Gym: whole-pool GPS, 267 distinct prompts, 70% letter_counting and 20% simple_equations,
   ``docs/results/selection_coverage_rg.txt``). The same fit with λ = ζ = 0 is the no-forgetting reference.
   Printed: targets against the sim, the RMS error, uniform's ESR over time (not fitted), and for arithmetic
   the PPO scorer's family mix (92% Countdown) as a check not fitted on.
3. **Ranking** (not fitted): every selector of the embedded head-to-head but ``ppo`` runs to the embedded
   rollout budget in both fitted sims (``--rank-seeds``); their final held-out accuracy minus uniform's (paired
   by seed) is set beside the embedded paired difference, with Spearman's ρ, Kendall's τ and the pairs whose
   order disagrees.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import asdict, replace
from itertools import combinations
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau, spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sim_calibration import nelder_mead  # noqa: E402

from gps_env.agents.registry import SELECTORS  # noqa: E402
from gps_env.bench.runs import read_run, run_name  # noqa: E402
from gps_env.simulated import Family, SimConfig, SimulatedPromptSelectionEnv  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
#: Percent of the Reasoning Gym pool per family (docs/results/selection_coverage_rg.txt, first line).
RG_POOL_SHARES = {"basic_arithmetic": 11, "chain_sum": 12, "count_bits": 6, "fraction_simplification": 8, "gcd": 12,
                  "lcm": 6, "letter_counting": 16, "prime_factorization": 3, "products": 9, "simple_equations": 18}
WORLDS = {
    "arithmetic": {"dir": "docs/results/h2h_arithmetic_new", "pool": 1000, "heldout": 400,
                   "narrow": ("gps", {"addition": 0.19, "countdown": 0.81}, None),
                   "check": ("ppo", {"addition": 0.08, "countdown": 0.92}, None)},
    "rg": {"dir": "docs/results/h2h_rg", "pool": 20000, "heldout": 500,
           "narrow": ("gps-pool", {"basic_arithmetic": 3, "chain_sum": 1, "count_bits": 1,
                                   "fraction_simplification": 2, "gcd": 0.4, "lcm": 2, "letter_counting": 70,
                                   "prime_factorization": 0.4, "products": 0.4, "simple_equations": 20}, 267),
           "check": None},
}


# ---------------------------------------------------------------------------------------------- embedded targets
def embedded(world: dict) -> dict:
    """The summary, and the seed-mean held-out curves (overall and per task) and per-step ESR of uniform and
    of the narrow selectors, from the runs."""
    root = ROOT / world["dir"]
    summary = json.loads((root / "summary.json").read_text())
    out = {"summary": summary, "curves": {}}
    for name in ["uniform", world["narrow"][0]] + ([world["check"][0]] if world["check"] else []):
        evals, esr = [], []
        for seed in summary["config"]["seeds"]:
            run = read_run(root / "runs" / f"{run_name(name, seed)}.jsonl")
            evals.append(run["evals"])
            esr.append([r["esr"] for r in run["steps"]])
        steps = [e["step"] for e in evals[0]]
        tasks = list(evals[0][0]["by_task"])
        by_task = np.array([[[e["by_task"][t] for t in tasks] for e in run] for run in evals]).mean(0)
        n = min(len(s) for s in esr)
        out["curves"][name] = {"steps": steps, "tasks": tasks, "by_task": by_task,
                               "accuracy": np.array([[e["accuracy"] for e in run] for run in evals]).mean(0),
                               "esr": np.array([s[:n] for s in esr]).mean(0)}
    return out


def world_config(name: str, emb: dict) -> SimConfig:
    base = SimConfig()
    if name == "arithmetic":
        (easy, hard) = base.families
        return replace(base, families=(Family("addition", easy.share, easy.logit),
                                       Family("countdown", hard.share, hard.logit)))
    start = emb["curves"]["uniform"]["by_task"][0]
    tasks = emb["curves"]["uniform"]["tasks"]
    total = sum(RG_POOL_SHARES.values())
    x, w = np.polynomial.hermite_e.hermegauss(60)
    w = w / w.sum()
    families = []
    for task, p in zip(tasks, start):
        target = min(max(p, 0.002), 0.998)
        lo, hi = -20.0, 20.0
        for _ in range(60):  # the mean logit whose Gaussian (sd σ) mean success is the task's accuracy
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if w @ (1 / (1 + np.exp(-(mid + base.spread * x)))) < target else (lo, mid)
        families.append(Family(task, RG_POOL_SHARES[task] / total, round((lo + hi) / 2, 3)))
    return replace(base, families=tuple(families), clusters=2 * len(families), cosine=(0.19, 0.72, 0.8))


# ---------------------------------------------------------------------------------------------- simulation
class FamilyMix:
    """A narrow proxy: B distinct prompts a step, each family picked in ``mix`` shares (in expectation), uniform
    within a family (over the whole family, or over a fixed subset of ``distinct`` prompts drawn once in the
    same shares)."""

    def __init__(self, env: SimulatedPromptSelectionEnv, seed: int, mix: dict[str, float], distinct: int | None):
        self.rng, self.b = np.random.default_rng(20_000 + seed), env.batch_size
        names, family = env.pool.family_names, env.pool.family
        share = np.array([mix.get(n, 0.0) for n in names], float)
        share = share / share.sum()
        members = [np.flatnonzero(family == f) for f in range(len(names))]
        if distinct is not None:
            counts = np.maximum(np.round(share * distinct).astype(int), (share > 0).astype(int))
            members = [self.rng.choice(m, min(c, m.size), replace=False) for m, c in zip(members, counts)]
        self.members = np.concatenate(members)
        self.p = np.concatenate([np.full(m.size, sh / m.size) for m, sh in zip(members, share)])
        self.p /= self.p.sum()

    def act(self, obs: dict) -> np.ndarray:
        return self.rng.choice(self.members, self.b, replace=False, p=self.p).astype(np.int64)


def episode(env: SimulatedPromptSelectionEnv, config: SimConfig, agent_of, seed: int, checkpoints: list[int]
            ) -> tuple[np.ndarray, np.ndarray]:
    """Per-family held-out accuracy at ``checkpoints`` (steps) and per-step ESR, on a prebuilt world."""
    env.config = config  # the world (families, cosines) is fixed; only the learning parameters change
    obs, _ = env.reset(seed=seed)
    agent = agent_of(env, seed)
    names, out, esr = env.heldout.family_names, [], []
    for step in range(checkpoints[-1] + 1):
        if step in checkpoints:
            out.append([env.evaluate()["by_task"][n] for n in names])
        if step < checkpoints[-1]:
            obs, reward, *_ = env.step(agent.act(obs))
            esr.append(reward)
    return np.array(out), np.array(esr)


class Fit:
    """The fit's targets, worlds (one per seed, built once) and residuals."""

    def __init__(self, name: str, emb: dict, base: SimConfig, seeds: list[int]) -> None:
        world = WORLDS[name]
        self.base, self.seeds = base, seeds
        self.steps = emb["curves"]["uniform"]["steps"]
        self.tasks = emb["curves"]["uniform"]["tasks"]
        assert self.tasks == [f.name for f in base.families], (self.tasks, base.families)
        self.weights = np.array([f.share for f in base.families])
        self.envs = {s: SimulatedPromptSelectionEnv(max_steps=self.steps[-1], pool_size=world["pool"],
                                                    heldout_size=world["heldout"], eval_every=0, world_seed=s,
                                                    config=base) for s in seeds}
        narrow, mix, distinct = world["narrow"]
        self.selectors = {"uniform": lambda env, seed: SELECTORS["uniform"](env, seed),
                          narrow: lambda env, seed: FamilyMix(env, seed, mix, distinct)}
        if world["check"]:
            check, cmix, cdistinct = world["check"]
            self.check = {check: lambda env, seed: FamilyMix(env, seed, cmix, cdistinct)}
        else:
            self.check = {}
        self.targets = {s: emb["curves"][s]["by_task"] - emb["curves"][s]["by_task"][:1]
                        for s in [*self.selectors, *self.check]}

    def simulate(self, config: SimConfig, selectors: dict) -> dict[str, dict[str, np.ndarray]]:
        out = {}
        for name, agent_of in selectors.items():
            runs = [episode(self.envs[s], config, agent_of, s, self.steps) for s in self.seeds]
            curves = np.array([c for c, _ in runs])
            out[name] = {"gain": (curves - curves[:, :1]).mean(0), "esr": np.array([e for _, e in runs]).mean(0)}
        return out

    def residuals(self, sim: dict) -> np.ndarray:
        """Per-task gains at every checkpoint after 0, weighted by √(task share), for the fitted selectors."""
        return np.concatenate([((sim[s]["gain"][1:] - self.targets[s][1:]) * np.sqrt(self.weights)).ravel()
                               for s in self.selectors])

    def config_of(self, x: np.ndarray, forgetting: bool) -> SimConfig:
        kw = {"semantic_rate": float(np.exp(x[0])), "plasticity": float(np.exp(x[1]))}
        if forgetting:
            kw |= {"interference": float(np.exp(x[2])), "forgetting": float(np.exp(x[3]))}
        else:
            kw |= {"interference": 0.0, "forgetting": 0.0}
        return replace(self.base, **kw)

    def fit(self, forgetting: bool, iters: int) -> tuple[SimConfig, float]:
        def loss(x: np.ndarray) -> float:
            return float(np.sum(self.residuals(self.simulate(self.config_of(x, forgetting), self.selectors)) ** 2))

        x0 = [np.log(self.base.semantic_rate), np.log(self.base.plasticity)]
        if forgetting:  # a start with some interference, the skill's rate raised to keep uniform's curve
            x0 = [np.log(2 * self.base.semantic_rate), x0[1], np.log(0.3), np.log(0.002)]
        x, value = nelder_mead(loss, np.array(x0), 0.5, iters)
        return self.config_of(x, forgetting), value


# ---------------------------------------------------------------------------------------------- ranking
def ranking(name: str, emb: dict, configs: dict[str, SimConfig], seeds: list[int]) -> dict:
    world, summary = WORLDS[name], emb["summary"]
    budget = summary["config"]["budget"]
    names = [s for s in summary["config"]["selectors"] if s != "ppo"]
    finals: dict[str, dict[str, list[float]]] = {label: {s: [] for s in names} for label in configs}
    for seed in seeds:
        env = SimulatedPromptSelectionEnv(max_steps=10**9, rollout_budget=budget, pool_size=world["pool"],
                                          heldout_size=world["heldout"], eval_every=0, world_seed=seed,
                                          config=next(iter(configs.values())))
        for label, config in configs.items():
            for s in names:
                env.config = config
                agent = SELECTORS[s](env, seed)
                obs, _ = env.reset(seed=seed)
                truncated = False
                while not truncated:
                    obs, _, _, truncated, _ = env.step(agent.act(obs))
                finals[label][s].append(env.evaluate()["accuracy"])
    emb_diff = {s: 0.0 if s == "uniform" else summary["selectors"][s]["paired_diff"] for s in names}
    emb_ci = {s: 0.0 if s == "uniform" else summary["selectors"][s]["paired_diff_ci95"] for s in names}
    out = {"selectors": names, "embedded": emb_diff, "embedded_ci95": emb_ci, "seeds": seeds}
    for label in configs:
        f = {s: np.array(v) for s, v in finals[label].items()}
        diff = {s: float((f[s] - f["uniform"]).mean()) for s in names}
        sd = {s: float((f[s] - f["uniform"]).std(ddof=1)) if len(seeds) > 1 else 0.0 for s in names}
        a, b = [emb_diff[s] for s in names], [diff[s] for s in names]
        disagree = [(x, y) for x, y in combinations(names, 2)
                    if np.sign(emb_diff[x] - emb_diff[y]) * np.sign(diff[x] - diff[y]) < 0]
        out[label] = {"diff": diff, "sd": sd, "spearman": float(spearmanr(a, b)[0]),
                      "kendall": float(kendalltau(a, b)[0]), "disagree": disagree,
                      "sign_agree": sum(np.sign(emb_diff[s]) == np.sign(diff[s]) for s in names if s != "uniform")}
    return out


# ---------------------------------------------------------------------------------------------- report
def float_list(text: str) -> list[float]:
    values = [float(v) for v in text.split(",")]
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"need η_s,Λ₀,λ,ζ, got {text!r}")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", choices=sorted(WORLDS), required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3], help="seeds of the fit")
    parser.add_argument("--rank-seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--iters", type=int, default=60, help="Nelder-Mead iterations of each fit")
    parser.add_argument("--no-ranking", action="store_true")
    parser.add_argument("--params", nargs=2, type=float_list, metavar="ETA,LAMBDA0,LAMBDA,ZETA",
                        help="skip the fits: (η_s, Λ₀, λ, ζ) without forgetting, then with (from an earlier fit)")
    parser.add_argument("--out", type=Path, help="the report (.txt, the command on top) and a .json beside it")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    lines: list[str] = ["$ python " + " ".join(shlex.quote(a) for a in [
        "benchmarks/sim_forgetting.py", *sys.argv[1:]]), ""]

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    emb = embedded(WORLDS[args.world])
    base = world_config(args.world, emb)
    fit = Fit(args.world, emb, base, args.seeds)
    say(f"world {args.world}: {WORLDS[args.world]['dir']}; sim N = {WORLDS[args.world]['pool']}, "
        f"held-out {WORLDS[args.world]['heldout']}, B = 32, k = 8, {fit.steps[-1]} steps, fit seeds {args.seeds}")
    say("families (name, share, mean logit): " + ", ".join(f"({f.name}, {f.share:.3f}, {f.logit:.2f})"
                                                           for f in base.families))
    record: dict = {"world": args.world, "families": [asdict(f) for f in base.families], "fits": {}}
    configs = {}
    for label, forgetting in (("no forgetting", False), ("forgetting", True)):
        if args.params:
            eta, plasticity, lam, zeta = args.params[forgetting]
            config = replace(base, semantic_rate=eta, plasticity=plasticity, interference=lam, forgetting=zeta)
            loss = float(np.sum(fit.residuals(fit.simulate(config, fit.selectors)) ** 2))
        else:
            config, loss = fit.fit(forgetting, args.iters)
        configs[label] = config
        sim = fit.simulate(config, {**fit.selectors, **fit.check})
        rms = float(np.sqrt(np.mean(fit.residuals(sim) ** 2 / np.repeat(fit.weights[None], 2 * (len(fit.steps) - 1),
                                                                         0).ravel())))
        say(f"\n== fit, {label}: η_s = {config.semantic_rate:.4g}  Λ₀ = {config.plasticity:.4g}  "
            f"λ = {config.interference:.4g}  ζ = {config.forgetting:.4g}  (loss {loss:.3g}; RMS per-task gain "
            f"error {rms:.4f})")
        fits = record["fits"][label] = {"config": {k: getattr(config, k) for k in (
            "semantic_rate", "plasticity", "interference", "forgetting")}, "loss": loss, "rms": rms, "curves": {}}
        say(f"   per-task held-out gain at step {fit.steps[1:]} (embedded / sim)")
        for s in sim:
            mark = "" if s in fit.selectors else "  (check: not fitted)"
            say(f"   {s}{mark}")
            w = fit.weights
            for j, task in enumerate(fit.tasks):
                say(f"     {task[:22]:>22}  " + " ".join(f"{e:+.3f}/{m:+.3f}" for e, m in zip(
                    fit.targets[s][1:, j], sim[s]["gain"][1:, j])))
            say(f"     {'all (pool shares)':>22}  " + " ".join(f"{e:+.3f}/{m:+.3f}" for e, m in zip(
                fit.targets[s][1:] @ w, sim[s]["gain"][1:] @ w)))
            fits["curves"][s] = {"embedded": fit.targets[s].tolist(), "sim": sim[s]["gain"].tolist()}
        esr_e, esr_s = emb["curves"]["uniform"]["esr"], sim["uniform"]["esr"]
        windows = np.array_split(np.arange(min(len(esr_e), len(esr_s))), 5)
        say("   uniform's ESR by fifth of the run (embedded / sim, not fitted): "
            + " ".join(f"{esr_e[ix].mean():.3f}/{esr_s[ix].mean():.3f}" for ix in windows))
        fits["uniform_esr"] = {"embedded": [float(esr_e[ix].mean()) for ix in windows],
                               "sim": [float(esr_s[ix].mean()) for ix in windows]}
    if not args.no_ranking:
        rank = ranking(args.world, emb, configs, args.rank_seeds)
        record["ranking"] = rank
        say(f"\n== ranking (not fitted): final held-out accuracy minus uniform's, paired by seed; sim seeds "
            f"{args.rank_seeds}, embedded budget {emb['summary']['config']['budget']} rollouts")
        say(f"   {'selector':>14} {'embedded (95% CI)':>18} " + " ".join(f"{label:>22}" for label in configs))
        order = sorted(rank["selectors"], key=lambda s: -rank["embedded"][s])
        for s in order:
            say(f"   {s:>14} {rank['embedded'][s]:+.3f} ± {rank['embedded_ci95'][s]:.3f}   "
                + " ".join(f"{rank[label]['diff'][s]:>+15.3f} (sd {rank[label]['sd'][s]:.3f})" for label in configs))
        for label in configs:
            r = rank[label]
            n = len(rank["selectors"])
            say(f"   {label}: Spearman ρ = {r['spearman']:+.3f}, Kendall τ = {r['kendall']:+.3f} over {n} selectors; "
                f"sign vs uniform agrees for {r['sign_agree']} of {n - 1}; {len(r['disagree'])} of "
                f"{n * (n - 1) // 2} pairs in the opposite order")
            resolved = [(x, y) for x, y in r["disagree"]
                        if abs(rank["embedded"][x] - rank["embedded"][y]) > 0.01]
            say("     opposite order with embedded gap > 0.01: "
                + (", ".join(f"{x} vs {y}" for x, y in resolved) or "none"))
    say(f"\n({time.perf_counter() - start:.0f} s)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")
        args.out.with_suffix(".json").write_text(json.dumps(record, indent=1, default=float))


if __name__ == "__main__":
    main()
