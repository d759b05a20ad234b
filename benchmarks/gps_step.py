"""One GPS step at paper scale: predict the whole pool, select the batch, one online ELBO update.

    python benchmarks/gps_step.py --n 40960 --batch-size 256 --repeats 7 --scaling 4096 16384 40960 163840
    python benchmarks/gps_step.py --embeddings reasoning-gym --scaling     # the RG world's own prompts

The pool's embeddings are random unit vectors of dimension 256 (WordLlama's 256-d model gives the same
shapes; ``--embeddings reasoning-gym`` embeds N prompts of the Reasoning Gym world's mix instead; the
screened greedy's cost depends on the values, through how often its speculation holds:
``benchmarks/sim_speed.py`` times it on the simulated world's clustered embeddings). Observations are
synthetic (random successes), so the benchmark times the agent alone, without an LM. Reports the median step
and its parts (the greedy as the agent runs it: through the screen, numpy's BLAS on one thread), the peak
memory the step adds, ``agent.act`` over the whole pool and over 4B candidates, each with numpy's BLAS on one
thread (the agent's setting) and unrestricted, the pool mat-vec the unscreened greedy repeats once per pick
(one and two BLAS threads), the prediction in row chunks through reused buffers against fresh tensors per op
and one pass, the greedy selection through the float32 screen against the unscreened greedy and a
straightforward implementation in the same run (same batches checked), and how the step time scales with N.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from types import SimpleNamespace

import numpy as np
import torch
from predict_memory import predict_fresh_tensors  # benchmarks/: the prediction as it ran before the buffers
from threadpoolctl import threadpool_limits

from gps_env.agents import GPS
from gps_env.agents.gps import SCREEN_MIN_POOL
from gps_env.models import ppm
from gps_env.selectors import greedy_diverse, utility
from gps_env.selectors.greedy import SPECULATE
from gps_env.selectors.screen import BFloat16Screen, Float32Screen


def peak_rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


class ScaleEnv(SimpleNamespace):
    """The few attributes an agent reads from an env, for a pool without an LM behind it."""

    @property
    def unwrapped(self):
        return self


#: ``--embeddings reasoning-gym``: the pool's WordLlama embeddings, set by ``main`` (None: random unit vectors).
POOL_EMBEDDINGS: np.ndarray | None = None


def reasoning_gym_embeddings(n: int) -> np.ndarray:
    """WordLlama embeddings of ``n`` prompts of the Reasoning Gym world's mix (cached like the env's)."""
    from gps_env.policy import mixes
    from gps_env.pool import PromptPool

    mix = mixes()["reasoning_gym"]
    problems, _ = mix.split(n, 1, 0)
    return PromptPool(problems, mix.tasks).embeddings


def make_agent(n: int, b: int, d: int, k: int, seed: int, candidates: float | None = None
               ) -> tuple[GPS, np.random.Generator]:
    rng = np.random.default_rng(seed)
    e = rng.normal(size=(n, d)).astype(np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    if POOL_EMBEDDINGS is not None:  # the world's own prompts; the rng still draws the batches
        e = POOL_EMBEDDINGS[:n]
    env = ScaleEnv(pool=range(n), batch_size=b, k=k)
    return GPS(env, seed=seed, embeddings=e, candidates=candidates), rng


class _NoLimit:
    """Stands in for the agent's thread-pool controller: numpy's BLAS keeps all its threads."""

    def limit(self, **_: object) -> contextlib.nullcontext:
        return contextlib.nullcontext()


def time_act(n: int, b: int, d: int, k: int, repeats: int, candidates: float | None, blas_one_thread: bool = True
             ) -> float:
    """Median seconds of ``agent.act`` (ELBO update + prediction + selection) through the public API."""
    agent, rng = make_agent(n, b, d, k, seed=0, candidates=candidates)
    if not blas_one_thread:
        agent._blas = _NoLimit()
    batch, times = rng.choice(n, size=b, replace=False).astype(np.int64), []
    for step in range(1, repeats + 2):
        obs = obs_for(batch, rng, n, k, step)
        t0 = time.perf_counter()
        batch = agent.act(obs)["prompts"]
        if step > 1:
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


def obs_for(batch: np.ndarray, rng: np.random.Generator, n: int, k: int, step: int) -> dict[str, np.ndarray]:
    zeros = np.zeros(n, np.int64)
    return {"last_batch": batch, "last_rewards": (rng.random((batch.size, k)) < rng.random((batch.size, 1)))
            .astype(np.float32), "times_selected": zeros, "rollouts": zeros, "successes": zeros,
            "last_seen": zeros, "step": np.array([step]), "rollouts_spent": np.array([0])}


def time_steps(n: int, b: int, d: int, k: int, repeats: int) -> dict[str, float]:
    agent, rng = make_agent(n, b, d, k, seed=0)
    batch = rng.choice(n, size=b, replace=False).astype(np.int64)
    parts = {"predict": [], "select": [], "elbo": [], "step": []}
    reset_peak()
    base = peak_rss_mib()
    for step in range(1, repeats + 2):
        obs = obs_for(batch, rng, n, k, step)
        t0 = time.perf_counter()
        agent.observe(obs)
        t1 = time.perf_counter()
        gamma = agent.predict_success()
        t2 = time.perf_counter()
        with threadpool_limits(limits=1, user_api="blas"):  # as the agent runs it
            batch, _ = greedy_diverse(utility(gamma), agent.embeddings, b, agent.lam, previous=obs["last_batch"],
                                      screen=agent._screen)
        t3 = time.perf_counter()
        if step > 1:  # the first step pays one-off allocations
            for key, value in (("elbo", t1 - t0), ("predict", t2 - t1), ("select", t3 - t2), ("step", t3 - t0)):
                parts[key].append(value)
    out = {key: float(np.median(v)) for key, v in parts.items()}
    out["peak_mib"] = peak_rss_mib() - base
    return out


def naive_greedy(u: np.ndarray, e: np.ndarray, b: int, lam: float, previous: np.ndarray) -> np.ndarray:
    """The straightforward greedy: every pick recomputes each candidate's distances to all picks, O(N·|S|·d)."""
    modular = u / b + lam * (1.0 - e @ e[previous].T).sum(axis=1) / (b * len(previous))
    chosen: list[int] = []
    for _ in range(b):
        dispersion = (1.0 - e @ e[chosen].T).sum(axis=1) if chosen else np.zeros(len(u))
        gain = 0.5 * modular + lam * 2.0 / (b * (b - 1)) * dispersion
        gain[chosen] = -np.inf
        chosen.append(int(np.argmax(gain)))
    return np.asarray(chosen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=40_960)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--scaling", type=int, nargs="*", default=[4_096, 16_384, 40_960, 163_840])
    parser.add_argument("--embeddings", choices=["random", "reasoning-gym"], default="random",
                        help="random unit vectors, or WordLlama embeddings of the Reasoning Gym world's prompts")
    args = parser.parse_args()
    if args.embeddings == "reasoning-gym":
        global POOL_EMBEDDINGS
        POOL_EMBEDDINGS = reasoning_gym_embeddings(max([args.n, *args.scaling]))
        if POOL_EMBEDDINGS.shape[1] != args.dim:
            parser.error(f"--dim must be {POOL_EMBEDDINGS.shape[1]} with --embeddings reasoning-gym")

    r = time_steps(args.n, args.batch_size, args.dim, args.k, args.repeats)
    print(f"GPS step, N={args.n}, B={args.batch_size}, d={args.dim}, k={args.k} (median of {args.repeats})")
    for key in ("step", "predict", "select", "elbo"):
        print(f"  {key:>8}: {r[key]:.3f} s")
    print(f"  peak memory added: {r['peak_mib']:.0f} MiB (target: step <= 0.5 s, memory <= 1024 MiB)")

    print("\nagent.act (median s): numpy's BLAS on one thread (the agent's setting) / unrestricted")
    acts = {}
    for name, candidates in (("whole pool (gps-pool)", None), ("candidates=4 (the default)", 4)):
        one, free = (time_act(args.n, args.batch_size, args.dim, args.k, args.repeats, candidates, flag)
                     for flag in (True, False))
        acts[name] = one
        print(f"  {name:>40}: {one:.3f} / {free:.3f} s ({free / one:.2f}x)")
    whole, subset = acts.values()
    print(f"  the default (candidates=4) is {whole / subset:.1f}x faster than the whole pool")

    rng = np.random.default_rng(2)
    e = rng.normal(size=(args.n, args.dim)).astype(np.float32)
    x = rng.normal(size=args.dim).astype(np.float32)
    print(f"\none pool mat-vec (N={args.n}, d={args.dim}, {e.nbytes / 2**20:.0f} MiB; the greedy does one per pick)")
    for threads in (1, 2):
        with threadpool_limits(limits=threads, user_api="blas"):
            e @ x
            t0 = time.perf_counter()
            for _ in range(200):
                e @ x
            mv = (time.perf_counter() - t0) / 200
        print(f"  {threads} BLAS thread(s): {mv * 1e3:.2f} ms; x B={args.batch_size} picks: "
              f"{mv * args.batch_size:.3f} s")

    agent, rng = make_agent(args.n, args.batch_size, args.dim, args.k, seed=3)
    for step in range(1, 3):
        agent.observe(obs_for(rng.choice(args.n, args.batch_size, replace=False), rng, args.n, args.k, step))
    chunk = ppm.PREDICT_CHUNK
    timings, outputs = {}, {}
    variants = ((f"chunks of {chunk} rows through reused buffers (the agent)", chunk, ppm.PPM.predict),
                (f"chunks of {chunk} rows, fresh tensors per op", chunk, predict_fresh_tensors),
                ("one pass through buffers", args.n, ppm.PPM.predict))
    context = agent._context(agent.history[-1])
    for label, size, predict in variants:
        ppm.PREDICT_CHUNK = size
        state = agent.generator.get_state()
        outputs[label] = predict(agent.model, agent._e, context, agent.generator)
        t0 = time.perf_counter()
        for _ in range(5):
            predict(agent.model, agent._e, context, agent.generator)
        timings[label] = (time.perf_counter() - t0) / 5
        agent.generator.set_state(state)
    ppm.PREDICT_CHUNK = chunk
    (a, ta), (b, tb), (c, tc) = timings.items()
    same = torch.equal(outputs[a], outputs[b])
    print(f"\nPPM prediction of the whole pool, alone (in the agent's loop: benchmarks/predict_memory.py): {a} "
          f"{ta:.3f} s; {b} {tb:.3f} s ({tb / ta:.1f}x, {'bit-identical' if same else 'DIFFERENT'}); {c} {tc:.3f} s "
          f"({tc / ta:.1f}x)")

    agent, rng = make_agent(args.n, args.batch_size, args.dim, args.k, seed=1)
    u = utility(rng.random(args.n))
    previous = rng.choice(args.n, args.batch_size, replace=False)
    print(f"\none screen call (products of all {args.n} rows, every column read as float32; the screened greedy "
          f"makes a few per batch)")
    for name, screen in (("float32", Float32Screen(agent.embeddings)), ("bfloat16", BFloat16Screen(agent.embeddings))):
        for k in (1, 1 + SPECULATE):
            vectors = agent.embeddings[:k]
            screen(vectors)
            t0 = time.perf_counter()
            for _ in range(100):
                columns = screen(vectors)
                for j in range(k):
                    columns[j]
            print(f"  {name:>8} with {k:>2} vector(s): {(time.perf_counter() - t0) / 100 * 1e3:.2f} ms")
    screen = Float32Screen(agent.embeddings)
    print(f"\ngreedy selection, N={args.n}, d={args.dim}, numpy's BLAS on one thread: the straightforward "
          f"O(N·|S|·d)-per-pick greedy,\none pool mat-vec per pick (ours without a screen), and ours through "
          f"the float32 screen (the agent's setting at N >= {SCREEN_MIN_POOL})")
    print(f"{'B':>5} {'naive s':>8} {'mat-vec s':>9} {'screened s':>10} {'vs naive':>8} {'vs mat-vec':>10} "
          f"{'same batch':>10}")
    for b in (32, 64, 128, 256):
        with threadpool_limits(limits=1, user_api="blas"):
            t0 = time.perf_counter()
            naive = naive_greedy(u, agent.embeddings, b, 0.5, previous[:b]) if b <= 128 else None
            t1 = time.perf_counter()
            plain, _ = greedy_diverse(u, agent.embeddings, b, 0.5, previous=previous[:b])
            t2 = time.perf_counter()
            screened, _ = greedy_diverse(u, agent.embeddings, b, 0.5, previous=previous[:b], screen=screen)
            t3 = time.perf_counter()
        same = plain.tolist() == screened.tolist() and (naive is None or naive.tolist() == plain.tolist())
        naive_s, vs_naive = (f"{t1 - t0:.3f}", f"{(t1 - t0) / (t3 - t2):.1f}x") if naive is not None else ("-", "-")
        print(f"{b:>5} {naive_s:>8} {t2 - t1:>9.3f} {t3 - t2:>10.3f} {vs_naive:>8} {(t2 - t1) / (t3 - t2):>9.1f}x "
              f"{str(same):>10}")

    if args.scaling:
        print(f"\nscaling, B={args.batch_size}: median step seconds (predict / select / elbo)")
        base = None
        for n in args.scaling:
            s = time_steps(n, args.batch_size, args.dim, args.k, max(3, args.repeats // 2))
            base = base or s["step"]
            print(f"  N={n:>7}: {s['step']:.3f} s ({s['predict']:.3f} / {s['select']:.3f} / {s['elbo']:.3f}), "
                  f"{s['step'] / base:.1f}x the smallest, peak +{s['peak_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
