"""Fit the simulated world's few parameters to the embedded world's measured curves, and print the fit.

    python benchmarks/sim_calibration.py --validate --out docs/results/sim_calibration.json

Targets come from ``docs/results/world.json`` (``benchmarks/world.py``: pool composition of the warm start,
held-out curves of uniform selection and of the near-0.5 oracle over 300 steps, B = 32, k = 8, 3 seeds).

1. **Composition** (analytic, Gauss–Hermite): two families with shares (1 − π, π), mean logits μ_easy, μ_hard
   and a within-family sd σ, fitted to the pool's mean success and its shares at success 0 and 1 over 8 and
   32 samples. κ (the between-cluster share of σ²) is the pooled variance of the logits of the embedded
   world's digit-group means within a task, over σ².
2. **Learning** (simulated at the embedded world's scale: N = 1000, 400 held-out, B = 32, k = 8, 300 steps,
   the same seeds for every candidate): η_s, η_m, α and Λ₀, fitted by Nelder–Mead (from a fixed start, so a
   re-run gives the same numbers) to the held-out accuracy *gains* of uniform and of the oracle at steps
   50..300 and to their mean effective-sample ratios; then checked on seeds the fit never saw.
3. **Validation** (not fitted, ``--validate``): the five agents of ``gps-env bench`` run to its rollout
   budget (76,800) in the calibrated sim; their mean ESR and final held-out gain are set beside the embedded
   head-to-head (``docs/results/h2h/summary.json``).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from gps_env.agents import Uniform
from gps_env.simulated import Family, SimConfig, SimulatedPromptSelectionEnv

ROOT = Path(__file__).resolve().parent.parent
STEPS, EVAL_EVERY, REFRESH = 300, 50, 50


def nelder_mead(f: Callable[[np.ndarray], float], x0: np.ndarray, step: float, iters: int) -> tuple[np.ndarray, float]:
    """Minimise ``f`` from ``x0`` (standard reflection / expansion / contraction / shrink)."""
    simplex = [np.asarray(x0, float)] + [x0 + step * np.eye(len(x0))[i] for i in range(len(x0))]
    values = [f(x) for x in simplex]
    for _ in range(iters):
        order = np.argsort(values)
        simplex, values = [simplex[i] for i in order], [values[i] for i in order]
        centroid = np.mean(simplex[:-1], axis=0)
        reflected = centroid + (centroid - simplex[-1])
        fr = f(reflected)
        if fr < values[0]:
            expanded = centroid + 2 * (centroid - simplex[-1])
            fe = f(expanded)
            simplex[-1], values[-1] = (expanded, fe) if fe < fr else (reflected, fr)
        elif fr < values[-2]:
            simplex[-1], values[-1] = reflected, fr
        else:
            contracted = centroid + 0.5 * (simplex[-1] - centroid)
            fc = f(contracted)
            if fc < values[-1]:
                simplex[-1], values[-1] = contracted, fc
            else:
                simplex = [simplex[0] + 0.5 * (x - simplex[0]) for x in simplex]
                values = [values[0]] + [f(x) for x in simplex[1:]]
    best = int(np.argmin(values))
    return simplex[best], values[best]


# ---------------------------------------------------------------------------------------------- composition
def composition_targets(world: dict) -> dict[str, float]:
    k8, n32 = world["composition"]["k8"]["all"], world["composition"]["n32"]["all"]
    return {"mean": n32["mean"], "zero@8": k8["zero"], "one@8": k8["one"], "zero@32": n32["zero"],
            "one@32": n32["one"]}


def composition_model(pi: float, mu_easy: float, mu_hard: float, sigma: float) -> dict[str, float]:
    """Expected composition of a pool whose logits are the two-family Gaussian mixture."""
    x, w = np.polynomial.hermite_e.hermegauss(80)
    w = w / w.sum()
    out = dict.fromkeys(("mean", "zero@8", "one@8", "zero@32", "one@32"), 0.0)
    for share, mu in ((1 - pi, mu_easy), (pi, mu_hard)):
        p = 1 / (1 + np.exp(-(mu + sigma * x)))
        for key, values in (("mean", p), ("zero@8", (1 - p) ** 8), ("one@8", p**8), ("zero@32", (1 - p) ** 32),
                            ("one@32", p**32)):
            out[key] += share * float(w @ values)
    return out


def fit_composition(targets: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    def unpack(x: np.ndarray) -> tuple[float, float, float, float]:
        return 1 / (1 + np.exp(-x[0])), x[1], x[2], float(np.exp(x[3]))

    def loss(x: np.ndarray) -> float:
        model = composition_model(*unpack(x))
        return sum((model[k] - targets[k]) ** 2 for k in targets)

    x, _ = nelder_mead(loss, np.array([0.0, 2.0, -2.0, 0.0]), 0.5, 400)
    pi, mu_easy, mu_hard, sigma = unpack(x)
    return {"pi": pi, "mu_easy": mu_easy, "mu_hard": mu_hard, "sigma": sigma}, composition_model(*unpack(x))


def cluster_share(world: dict, sigma: float) -> float:
    """Pooled within-task variance of the digit-group mean logits, over σ² (a crude moment estimate)."""
    groups = {k: v for k, v in world["composition"]["n32"].items() if k != "all"}
    pooled, total = 0.0, 0
    for task in {k.split("/")[0] for k in groups}:
        rows = [v for k, v in groups.items() if k.startswith(task + "/")]
        n = np.array([r["n"] for r in rows], float)
        logit = np.log(np.array([r["mean"] for r in rows]) / (1 - np.array([r["mean"] for r in rows])))
        pooled += float(n @ (logit - n @ logit / n.sum()) ** 2)
        total += int(n.sum())
    return min(pooled / total / sigma**2, 1.0)


# ---------------------------------------------------------------------------------------------- learning
class NearHalfOracle:
    """``benchmarks/world.py``'s oracle: B prompts nearest 0.5 by a pass rate re-measured every ``REFRESH``
    steps from 16 uncharged samples of the true p, blended 50/50 with observed rewards in between."""

    def __init__(self, env: SimulatedPromptSelectionEnv, seed: int) -> None:
        self.env, self.rng = env, np.random.default_rng(10_000 + seed)
        self.rates = self.measure()

    def measure(self) -> np.ndarray:
        p = self.env.success_probability()
        return self.rng.binomial(16, p) / 16

    def act(self, obs: dict) -> np.ndarray:
        step = int(obs["step"][0])
        if step > 0:
            batch = obs["last_batch"]
            self.rates[batch] = 0.5 * self.rates[batch] + 0.5 * obs["last_rewards"].mean(axis=1)
            if step % REFRESH == 0:
                self.rates = self.measure()
        score = np.abs(self.rates - 0.5) + 1e-3 * self.rng.random(len(self.rates))
        return np.argsort(score)[: self.env.batch_size].astype(np.int64)


def run_curve(config: SimConfig, selector: str, seed: int) -> tuple[np.ndarray, float]:
    """Held-out accuracy at steps 0, 50, .., 300 and the mean ESR of one episode."""
    env = SimulatedPromptSelectionEnv(max_steps=STEPS, eval_every=EVAL_EVERY, world_seed=seed, config=config,
                                      time_in_info=False)
    obs, info = env.reset(seed=seed)
    agent = Uniform(env, seed=seed) if selector == "uniform" else NearHalfOracle(env, seed)
    curve, esr, truncated = [info["eval"]["accuracy"]], [], False
    while not truncated:
        obs, reward, _, truncated, info = env.step(agent.act(obs))
        esr.append(reward)
        if "eval" in info:
            curve.append(info["eval"]["accuracy"])
    return np.array(curve), float(np.mean(esr))


def learning_targets(world: dict) -> dict[str, dict[str, object]]:
    out = {}
    for selector in ("uniform", "near-0.5 oracle"):
        runs = [r for r in world["runs"] if r["selector"] == selector]
        curves = np.array([[c[2] for c in r["curve"]] for r in runs])
        out[selector] = {"gain": (curves - curves[:, :1]).mean(0), "esr": float(np.mean([r["mean_esr"] for r in runs]))}
    return out


def simulate(config: SimConfig, seeds: list[int]) -> dict[str, dict[str, object]]:
    out = {}
    for selector in ("uniform", "near-0.5 oracle"):
        runs = [run_curve(config, "uniform" if selector == "uniform" else "oracle", s) for s in seeds]
        curves = np.array([c for c, _ in runs])
        out[selector] = {"gain": (curves - curves[:, :1]).mean(0), "esr": float(np.mean([e for _, e in runs])),
                         "start": float(curves[:, 0].mean())}
    return out


def residuals(sim: dict, targets: dict) -> np.ndarray:
    """Gain errors at steps 50..300 and the mean-ESR error, for uniform and the oracle (14 numbers)."""
    return np.concatenate([np.append(sim[s]["gain"][1:] - targets[s]["gain"][1:], sim[s]["esr"] - targets[s]["esr"])
                           for s in targets])


def fit_learning(base: SimConfig, targets: dict, seeds: list[int], iters: int) -> SimConfig:
    """Nelder–Mead over (log η_s, log η_m, logit α, log Λ₀) from a fixed start (η_s 0.5, η_m 5, α 0.73, Λ₀ 1.5)."""
    def config_of(x: np.ndarray) -> SimConfig:
        return replace(base, semantic_rate=float(np.exp(x[0])), memory_rate=float(np.exp(x[1])),
                       adaptivity=float(1 / (1 + np.exp(-x[2]))), plasticity=float(np.exp(x[3])))

    def loss(x: np.ndarray) -> float:
        return float(np.sum(residuals(simulate(config_of(x), seeds), targets) ** 2))

    x, _ = nelder_mead(loss, np.array([np.log(0.5), np.log(5.0), 1.0, np.log(1.5)]), 0.5, iters)
    return config_of(x)


# ---------------------------------------------------------------------------------------------- validation
def validate(config: SimConfig, seeds: list[int]) -> dict[str, dict[str, float]]:
    """The five bench agents to the bench's rollout budget in the sim, beside the embedded head-to-head."""
    from gps_env.agents.registry import MAIN_SELECTORS, SELECTORS

    h2h = json.loads((ROOT / "docs/results/h2h/summary.json").read_text())
    budget = h2h["config"]["budget"]
    out = {}
    for name in MAIN_SELECTORS:
        gains, esrs = [], []
        for seed in seeds:
            env = SimulatedPromptSelectionEnv(max_steps=10**9, rollout_budget=budget, eval_every=0, world_seed=seed,
                                              config=config, time_in_info=False)
            agent = SELECTORS[name](env, seed)
            obs, _ = env.reset(seed=seed)
            start, truncated = env.evaluate()["accuracy"], False
            while not truncated:
                obs, _, _, truncated, _ = env.step(agent.act(obs))
            gains.append(env.evaluate()["accuracy"] - start)
            esrs.append(env.ledger.summary()["esr"])
        emb = h2h["selectors"][name]
        out[name] = {"sim_gain": float(np.mean(gains)), "sim_esr": float(np.mean(esrs)),
                     "embedded_gain": emb["final_accuracy"] - emb["curve"]["accuracy"][0],
                     "embedded_esr": emb["mean_esr"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", type=Path, default=ROOT / "docs/results/world.json")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3], help="world and episode seeds of the fit")
    parser.add_argument("--check-seeds", type=int, nargs="+", default=[10, 11, 12, 13], help="seeds not fitted on")
    parser.add_argument("--iters", type=int, default=300, help="Nelder-Mead iterations of the learning fit")
    parser.add_argument("--validate", action="store_true", help="run the five bench agents in the fitted sim")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)  # GPS's small PPM (validation) runs steadier on one thread of a shared machine
    world = json.loads(args.world.read_text())
    start = time.perf_counter()

    comp_targets = composition_targets(world)
    comp, comp_fit = fit_composition(comp_targets)
    kappa = cluster_share(world, comp["sigma"])
    print("1. pool composition (two-family logit mixture, analytic)")
    print(f"   π = {comp['pi']:.3f}  μ_easy = {comp['mu_easy']:.3f}  μ_hard = {comp['mu_hard']:.3f}  "
          f"σ = {comp['sigma']:.3f}  κ = {kappa:.3f}")
    print(f"   {'':>8} " + " ".join(f"{k:>8}" for k in comp_targets))
    print(f"   {'embedded':>8} " + " ".join(f"{v:>8.3f}" for v in comp_targets.values()))
    print(f"   {'model':>8} " + " ".join(f"{comp_fit[k]:>8.3f}" for k in comp_targets))

    easy = Family("easy", float(round(1 - comp["pi"], 3)), float(round(comp["mu_easy"], 3)))
    hard = Family("hard", float(round(comp["pi"], 3)), float(round(comp["mu_hard"], 3)))
    base = replace(SimConfig(), families=(easy, hard), spread=float(round(comp["sigma"], 3)),
                   cluster_share=float(round(kappa, 3)))
    realised = []
    for seed in args.seeds:
        env = SimulatedPromptSelectionEnv(world_seed=seed, config=base, eval_every=0)
        env.reset(seed=seed)
        p = env.success_probability()
        realised.append([p.mean(), ((1 - p) ** 8).mean(), (p**8).mean(), ((1 - p) ** 32).mean(), (p**32).mean()])
    print(f"   {'sim':>8} " + " ".join(f"{v:>8.3f}" for v in np.mean(realised, axis=0))
          + f"   (N = 1000, expected values, world seeds {args.seeds})")

    targets = learning_targets(world)
    fitted = fit_learning(base, targets, args.seeds, args.iters)
    steps = list(range(0, STEPS + 1, EVAL_EVERY))
    record = {
        "composition": {"targets": comp_targets, "fit": comp_fit, "params": comp, "cluster_share": kappa,
                        "sim_expected": dict(zip(comp_targets, np.mean(realised, axis=0).tolist()))},
        "learning": {"steps": steps, "targets": {s: {"gain": v["gain"].tolist(), "esr": v["esr"]}
                                                 for s, v in targets.items()}},
        "config": asdict(fitted),
    }
    print(f"\n2. learning: η_s = {fitted.semantic_rate:.4g}  η_m = {fitted.memory_rate:.4g}  "
          f"α = {fitted.adaptivity:.3f}  Λ₀ = {fitted.plasticity:.4g}")
    print(f"   held-out gain       {'step':>8} " + " ".join(f"{s:>6}" for s in steps) + "   mean ESR")
    for label, seeds in (("fit", args.seeds), ("check", args.check_seeds)):
        sim = simulate(fitted, seeds)
        rms = float(np.sqrt(np.mean(residuals(sim, targets) ** 2)))
        record["learning"][label] = {"seeds": seeds, "rms": rms, **{
            s: {"gain": v["gain"].tolist(), "esr": v["esr"], "start": v["start"]} for s, v in sim.items()}}
        for selector in targets:
            rows = [("embedded", targets[selector])] if label == "fit" else []
            for name, row in [*rows, (f"sim {label}", sim[selector])]:
                print(f"   {selector[:15]:>15} {name:>9} " + " ".join(f"{g:>+6.3f}" for g in row["gain"])
                      + f"   {row['esr']:.3f}")
        print(f"   RMS error on {label} seeds {seeds}: {rms:.4f} (14 residuals: 2 × 6 gains + 2 ESRs); "
              f"sim held-out accuracy at step 0 {sim['uniform']['start']:.3f}")
    if args.validate:
        record["validation"] = validate(fitted, args.seeds[:3])
        print(f"\n3. validation (not fitted; bench agents to 76,800 rollouts, seeds {args.seeds[:3]})")
        print(f"   {'agent':>9} {'sim gain':>9} {'emb gain':>9} {'sim ESR':>8} {'emb ESR':>8}")
        for name, v in record["validation"].items():
            print(f"   {name:>9} {v['sim_gain']:>+9.3f} {v['embedded_gain']:>+9.3f} {v['sim_esr']:>8.3f} "
                  f"{v['embedded_esr']:>8.3f}")
    print(f"\nfitted SimConfig: {fitted}\n({time.perf_counter() - start:.0f} s)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
