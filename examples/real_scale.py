"""Real models and data: GPS against Uniform on a dataset file, with vLLM rollouts and checkpoints.

On a GPU machine (one 80 GB GPU; a DeepSeek-R1-Distill-Qwen-1.5B checkpoint and DeepScaleR on local disk)::

    pip install "gps-env[vllm,math]"
    python examples/real_scale.py --model /models/DeepSeek-R1-Distill-Qwen-1.5B \\
        --train /data/deepscaler.parquet --test /data/aime24.jsonl --format deepscaler \\
        --device cuda --dtype bfloat16 --chat-template --engine vllm --max-new-tokens 4096 \\
        --batch-size 256 --k 8 --micro-batch-size 8 --gradient-checkpointing --lr 1e-6 \\
        --steps 300 --selectors gps uniform --checkpoint-dir runs/r1-1.5b --checkpoint-every 10

Here, end to end on the CPU with the embedded tiny policy and Countdown-Tasks-3to4-format files it writes
itself (``--engine vllm`` needs vLLM, which the README's set-up installs; ``auto`` falls back to the
transformers engine without it)::

    python examples/real_scale.py --steps 20 --engine auto

Each selector runs from the same initial policy (a fresh episode), under one rollout ledger, and is
checkpointed every ``--checkpoint-every`` steps: rerun the same command after a crash and each run resumes
where it stopped. Prints held-out accuracy and rollouts per selector.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from gps_env.agents.registry import SELECTORS
from gps_env.checkpoint import Checkpointer
from gps_env.engines import SamplingParams
from gps_env.env import PromptSelectionEnv
from gps_env.grpo import GRPOConfig
from gps_env.policy import PolicyConfig, warm_start
from gps_env.pool import PromptPool
from gps_env.tasks import CountdownTask, load_dataset_file


def write_countdown_files(folder: Path, train: int, test: int, seed: int = 0) -> tuple[Path, Path]:
    """Countdown-Tasks-3to4-format JSONL files ({"target", "nums"}) drawn from the embedded Countdown task."""
    task, rng, seen, rows = CountdownTask(), np.random.default_rng(seed), set(), []
    while len(rows) < train + test:
        p = task.sample(rng)
        nums, target = p.prompt.rstrip(":").split(">")
        if p.prompt not in seen:
            seen.add(p.prompt)
            rows.append({"target": int(target), "nums": [int(x) for x in nums.split(",")]})
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "countdown_train.jsonl", folder / "countdown_test.jsonl"
    for path, part in zip(paths, (rows[:train], rows[train:])):
        path.write_text("".join(json.dumps(r) + "\n" for r in part))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="HF checkpoint directory (default: the embedded tiny policy)")
    parser.add_argument("--train", help="training prompts file (default: Countdown files written here)")
    parser.add_argument("--test", help="held-out prompts file")
    parser.add_argument("--format", default="countdown", help="math-lighteval, deepscaler, countdown, prompt-answer")
    parser.add_argument("--duplicates", choices=("error", "first"), default="error",
                        help="a prompt that repeats in a file: refuse the file naming both lines, or keep the first")
    parser.add_argument("--selectors", nargs="+", default=["gps", "uniform"], choices=sorted(SELECTORS))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--engine", default="auto", choices=["auto", "transformers", "vllm"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--chat-template", action="store_true")
    parser.add_argument("--max-new-tokens", type=int, default=10)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--micro-batch-size", type=int, default=None)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--checkpoint-dir", type=Path, default=Path("runs/real_scale"))
    parser.add_argument("--checkpoint-every", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    if args.train is None:
        if args.format != "countdown":
            parser.error("give --train and --test files for this format")
        args.train, args.test = write_countdown_files(args.checkpoint_dir / "data", 400, 100)
    elif args.test is None:
        parser.error("--test is required with --train")
    train, task = load_dataset_file(args.train, args.format, duplicates=args.duplicates)
    test, _ = load_dataset_file(args.test, args.format, task=task, duplicates=args.duplicates)
    model = Path(args.model) if args.model else warm_start(PolicyConfig())

    env = PromptSelectionEnv(
        pool=PromptPool(train, [task]), heldout=PromptPool(test, [task]), policy=model,
        batch_size=args.batch_size, rollouts_per_prompt=args.k, max_steps=args.steps, eval_every=args.eval_every,
        engine=args.engine, device=args.device, dtype=args.dtype, chat_template=args.chat_template,
        gradient_checkpointing=args.gradient_checkpointing,
        sampling=SamplingParams(temperature=args.temperature, max_new_tokens=args.max_new_tokens),
        grpo=GRPOConfig(lr=args.lr, micro_batch_size=args.micro_batch_size),
    )
    print(f"policy {model} on {args.device}, engine {type(env.engine).__name__}, "
          f"{len(train)} training / {len(test)} held-out prompts")
    results = {}
    for name in args.selectors:
        agent = SELECTORS[name](env, args.seed)
        ckpt = Checkpointer(args.checkpoint_dir / name, every=args.checkpoint_every)
        obs = ckpt.restore(env, agent)
        if obs is None:
            obs, _ = env.reset(seed=args.seed)
        truncated = env.done
        with tqdm(total=args.steps, initial=env.current_step, desc=name) as bar:
            while not truncated:
                obs, _, _, truncated, info = env.step(agent.act(obs))
                ckpt.step(env, agent)
                bar.update(1)
        results[name] = (env.evaluate()["accuracy"], env.ledger.selector_rollouts)
    for name, (accuracy, rollouts) in results.items():
        print(f"{name:>10}: held-out accuracy {accuracy:.3f} after {rollouts} selector rollouts")
    env.close()


if __name__ == "__main__":
    main()
