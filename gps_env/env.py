"""``PromptSelectionEnv``: the embedded world, one RL post-training run of a reasoning LM (real rollouts).

The contract (action, observation, reward, info, probes, checkpoints) is :class:`gps_env.contract.
PromptSelectionContract`; this module supplies its hooks: sampling with a rollout engine and scoring with the
task verifiers, a GRPO update, held-out evaluation, and the policy's part of a checkpoint.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gps_env.actions import MAX_WEIGHT, PromptBatch
from gps_env.contract import Evaluation, PromptSelectionContract, Sampled, Update, check_settings
from gps_env.engines import ENGINE_NAMES, RolloutEngine, Rollouts, SamplingParams, build_engine
from gps_env.grpo import GRPOConfig, GRPOTrainer
from gps_env.policy import REASONING_GYM_MIXES, PolicyConfig, default_policy, load_policy, mixes, warm_start
from gps_env.pool import PromptPool

__all__ = ["MAX_WEIGHT", "PromptBatch", "PromptSelectionEnv"]

EngineFactory = Callable[[Any, Any], RolloutEngine]
#: Default sampling length per task mix (the Reasoning Gym world's longest reference answer is 21 tokens).
_MAX_NEW_TOKENS = dict.fromkeys(REASONING_GYM_MIXES, 24)


def _digest(lines: Any) -> str:
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode())
        h.update(b"\x1e")
    return h.hexdigest()[:16]


class PromptSelectionEnv(PromptSelectionContract):
    """Prompt selection for GRPO post-training of a reasoning LM (the contract: :class:`PromptSelectionContract`).

    Each ``step`` samples ``rollouts_per_prompt`` completions per selected prompt with the rollout engine,
    scores them with the task verifiers and runs one GRPO update on the policy. The default world is embedded:
    a 0.86M-parameter Llama warm-started on LSB-first addition and Countdown (trained once, cached under
    ``~/.cache/gps_env``).

    **Info** beyond the contract: ``tokens`` counts the batch's prompt and completion tokens, ``grpo`` holds the
    GRPO update statistics, and ``eval`` is the mean *sampled* success over the held-out set, ``by_task`` per
    task (every evaluation of an episode draws the same random numbers, so a curve compares policies, not
    noise).

    Args:
        batch_size: prompts per step (B).
        rollouts_per_prompt: completions per prompt (k, the GRPO group size).
        max_steps: GRPO steps per episode.
        pool_size, heldout_size: sizes of the generated training pool and disjoint held-out set.
        eval_every: held-out evaluation period in steps (0 disables evaluation).
        eval_rollouts: samples per held-out prompt.
        rollout_budget: truncate once this many selector rollouts are spent (None: no budget).
        world_seed: seed of the pool and held-out generation (the world, fixed for the env's life).
        task_mix: name of the task mix (see :func:`gps_env.policy.mixes`).
        policy: ``PolicyConfig`` of the embedded warm start, or a directory saved with
            ``save_pretrained`` (model + tokenizer).
        pool, heldout: user pools that replace the generated ones.
        grpo: GRPO hyperparameters.
        sampling: sampling parameters of training and probe rollouts (eval uses the same).
        engine: ``"auto"`` (vLLM where it is installed and can run the policy, else transformers),
            ``"transformers"``, ``"vllm"``, or a factory ``(model, tokenizer) -> RolloutEngine``.
        time_in_info: include wall-clock seconds in ``info`` (``time``, the ledger's ``seconds``). Off by
            default: seconds differ between identical runs, and Gymnasium's ``check_env`` compares the infos
            of two identically seeded steps. The ledger counts seconds either way (``env.unwrapped.ledger``).
        render_mode: ``None`` or ``"ansi"``.
        progress: show a progress bar while the warm start trains on first use.
        device: where the policy trains (``"cuda"`` on a GPU machine).
        dtype: policy dtype, e.g. ``"bfloat16"`` for a real model on a GPU (``None``: as saved).
        gradient_checkpointing: recompute activations in the backward pass (large models; pair it with
            ``GRPOConfig(micro_batch_size=...)``).
        chat_template: wrap each prompt as one user turn with the tokenizer's chat template (and the
            generation prompt) before sampling; for instruction-tuned models. Verifiers see only completions.
    """

    def __init__(
        self,
        batch_size: int = 32,
        rollouts_per_prompt: int = 8,
        max_steps: int = 200,
        pool_size: int = 1000,
        heldout_size: int = 400,
        eval_every: int = 50,
        eval_rollouts: int = 8,
        rollout_budget: int | None = None,
        world_seed: int = 0,
        task_mix: str = "default",
        policy: PolicyConfig | str | Path | None = None,
        pool: PromptPool | None = None,
        heldout: PromptPool | None = None,
        grpo: GRPOConfig | None = None,
        sampling: SamplingParams | None = None,
        engine: str | EngineFactory = "auto",
        time_in_info: bool = False,
        render_mode: str | None = None,
        progress: bool = True,
        device: str = "cpu",
        dtype: str | None = None,
        gradient_checkpointing: bool = False,
        chat_template: bool = False,
    ) -> None:
        check_settings(rollouts_per_prompt, max_steps, eval_every, eval_rollouts, rollout_budget, render_mode)
        if pool is None or heldout is None:
            if task_mix not in mixes():
                raise ValueError(f"unknown task_mix {task_mix!r}; known: {sorted(mixes())}")
            mix = mixes()[task_mix]
            problems, held = mix.split(pool_size, heldout_size, world_seed)
            pool = pool or PromptPool(problems, mix.tasks)
            heldout = heldout or PromptPool(held, mix.tasks)
        self.pool, self.heldout = pool, heldout
        self._init_contract(len(pool), batch_size, rollouts_per_prompt, max_steps, rollout_budget, eval_every,
                            eval_rollouts, time_in_info, render_mode)
        self.sampling = sampling or SamplingParams(max_new_tokens=_MAX_NEW_TOKENS.get(task_mix, 10))
        self.grpo_config = grpo or GRPOConfig()

        if isinstance(engine, str) and engine not in ENGINE_NAMES:
            raise ValueError(f"unknown engine {engine!r}; pass one of {ENGINE_NAMES} or a factory")
        if isinstance(policy, (str, Path)):
            self.policy_path = Path(policy)
        else:
            self.policy_path = warm_start(policy or default_policy(task_mix), progress=progress)
        self.policy, self.tokenizer = load_policy(self.policy_path, device=device, dtype=dtype,
                                                  gradient_checkpointing=gradient_checkpointing)
        if chat_template and not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(f"chat_template=True but the tokenizer in {self.policy_path} has no chat template")
        self.chat_template = chat_template
        self._initial_state = copy.deepcopy(self.policy.state_dict())
        self.engine: RolloutEngine = (
            build_engine(engine, self.policy, self.tokenizer, self.policy_path)
            if isinstance(engine, str)
            else engine(self.policy, self.tokenizer)
        )

    # ------------------------------------------------------------------ hooks of the contract
    def _world_reset(self) -> None:
        """The initial weights in the policy and the engine, a fresh optimiser, and this episode's seeds."""
        self.policy.load_state_dict(self._initial_state)
        self.engine.load_weights(self.policy.state_dict())
        self.trainer = GRPOTrainer(self.policy, self.grpo_config, self.tokenizer.pad_token_id)
        seeds = self.np_random.integers(0, 2**62, size=2)
        self._generator = torch.Generator().manual_seed(int(seeds[0]))
        self._eval_seed = int(seeds[1])  # one seed per episode: every eval uses the same random numbers
        self._timeouts_at_reset = self._verifier_timeouts()

    def _world_sample(self, indices: list[int], purpose: str) -> Sampled:
        """k completions per prompt from the engine, scored by the task verifiers; each prompt's rollouts are its
        payload (the GRPO update trains on them)."""
        n = self.k
        prompts = [self._format(self.pool[i].prompt) for i in indices]
        with self.ledger.timer(purpose, "generate"):
            rollouts = self.engine.generate(prompts, n, self.sampling, self._generator)
        with self.ledger.timer(purpose, "verify"):
            rewards = np.array(
                [self.pool.verify(indices[r // n], text) for r, text in enumerate(rollouts.texts)], np.float64
            ).reshape(len(indices), n)
        return Sampled(rewards, [rollouts.select([pos]) for pos in range(len(indices))],
                       prompt_tokens=rollouts.prompt_tokens, completion_tokens=rollouts.completion_tokens)

    def _world_update(self, indices: np.ndarray, rewards: np.ndarray, weights: np.ndarray,
                      payloads: list[Rollouts]) -> Update:
        """One GRPO update on the batch's rollouts, then the new weights into the engine."""
        batch = Rollouts.concat(payloads)
        stats = self.trainer.step(batch.prompt_ids, batch.completion_ids, rewards, weights)
        self.engine.load_weights(self.policy.state_dict())
        return Update(stats.as_dict(), prompt_tokens=batch.prompt_tokens, completion_tokens=batch.completion_tokens)

    def _world_evaluate(self) -> Evaluation:
        """Mean sampled success over the held-out set, ``eval_rollouts`` samples per prompt, with the episode's
        evaluation seed."""
        generator = torch.Generator().manual_seed(self._eval_seed)
        prompts = [self._format(p) for p in self.heldout.prompts]
        with self.ledger.timer("eval", "generate"):
            rollouts = self.engine.generate(prompts, self.eval_rollouts, self.sampling, generator)
        with self.ledger.timer("eval", "verify"):
            rewards = np.array(
                [self.heldout.verify(r // self.eval_rollouts, t) for r, t in enumerate(rollouts.texts)]
            ).reshape(len(prompts), self.eval_rollouts)
        success = rewards.mean(axis=1)
        by_task: dict[str, float] = {}
        for name in sorted({p.task for p in self.heldout.problems}):
            mask = np.array([p.task == name for p in self.heldout.problems])
            by_task[name] = float(success[mask].mean())
        metrics = {
            "accuracy": float(success.mean()),
            "solved_share": float((success == 1).mean()),
            "unsolved_share": float((success == 0).mean()),
            "by_task": by_task,
        }
        return Evaluation(metrics, rollouts=len(rollouts), prompt_tokens=rollouts.prompt_tokens,
                          completion_tokens=rollouts.completion_tokens)

    def _world_close(self) -> None:
        """Shut the engine down (vLLM's engine core) and stop the verifiers' worker processes."""
        close = getattr(self.engine, "close", None)
        if callable(close):
            close()
        tasks = {id(t): t for pool in (self.pool, self.heldout) for t in pool.tasks.values()}
        for task in tasks.values():
            stop = getattr(task, "close", None)
            if callable(stop):
                stop()

    def _format(self, prompt: str) -> str:
        if not self.chat_template:
            return prompt
        return self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                  add_generation_prompt=True)

    def _episode_timeouts(self) -> int:
        return self._verifier_timeouts() - self._timeouts_at_reset

    def _verifier_timeouts(self) -> int:
        """Timed-out verifications so far, over the distinct tasks of the pool and the held-out set."""
        tasks = {id(t): t for pool in (self.pool, self.heldout) for t in pool.tasks.values()}
        return sum(t.timeouts for t in tasks.values())

    # ------------------------------------------------------------------ checkpointing
    def config_fingerprint(self) -> dict[str, Any]:
        """What a checkpoint of this env must agree with: the world, the initial policy and the RL settings.

        Digests (sha256, 16 hex digits) stand in for the pools and the initial weights.
        """
        if getattr(self, "_initial_digest", None) is None:  # hashed once: a real model's weights are GBs
            h = hashlib.sha256()
            for name in sorted(self._initial_state):
                tensor = self._initial_state[name].detach().cpu().contiguous()
                h.update(name.encode())
                h.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
            self._initial_digest = h.hexdigest()[:16]
        return {
            "pool": _digest(f"{p.task}\x1f{p.prompt}\x1f{p.answer}" for p in self.pool.problems),
            "heldout": _digest(f"{p.task}\x1f{p.prompt}\x1f{p.answer}" for p in self.heldout.problems),
            "initial_policy": self._initial_digest, "chat_template": self.chat_template,
            "batch_size": self.batch_size, "k": self.k, "max_steps": self.max_steps,
            "rollout_budget": self.rollout_budget, "eval_every": self.eval_every,
            "eval_rollouts": self.eval_rollouts, "sampling": repr(self.sampling), "grpo": repr(self.grpo_config),
        }

    def _world_state(self) -> dict[str, Any]:
        """Policy weights, optimiser, sampling generator, evaluation seed and the episode's verifier timeouts."""
        return {
            "policy": {k: v.detach().clone() for k, v in self.policy.state_dict().items()},
            "optimizer": copy.deepcopy(self.trainer.optimizer.state_dict()),
            "generator": self._generator.get_state(),
            "eval_seed": self._eval_seed,
            "verifier_timeouts": self._episode_timeouts(),
        }

    def _world_check_state(self, state: Mapping[str, Any]) -> None:
        """Every field of :meth:`_world_state` present and restorable: weights with this policy's names, shapes
        and dtypes; an optimiser state of this optimiser's groups and parameter shapes; a generator state."""
        missing = sorted({"policy", "optimizer", "generator", "eval_seed", "verifier_timeouts"} - set(state))
        if missing:
            raise ValueError(f"the env state has no {', '.join(map(repr, missing))}")
        weights = state["policy"]
        if not isinstance(weights, Mapping) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
            raise ValueError("checkpoint 'policy' must map parameter names to tensors")
        expected = {k: (tuple(v.shape), v.dtype) for k, v in self._initial_state.items()}
        found = {k: (tuple(v.shape), v.dtype) for k, v in weights.items()}
        if found != expected:
            differ = sorted(k for k in set(found) | set(expected) if found.get(k) != expected.get(k))
            raise ValueError(f"checkpoint policy weights do not match this env's policy (names, shapes or dtypes "
                             f"of: {', '.join(differ[:5])})")
        self._check_optimizer_state(state["optimizer"])
        generator = state["generator"]
        reference = torch.Generator().get_state()
        if (not isinstance(generator, torch.Tensor) or generator.dtype != reference.dtype
                or generator.shape != reference.shape):
            raise ValueError("checkpoint 'generator' is not a torch CPU generator state")
        for key in ("eval_seed", "verifier_timeouts"):
            value = state[key]
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
                raise ValueError(f"checkpoint {key!r} must be a non-negative integer, got {value!r:.40}")

    def _check_optimizer_state(self, saved: Any) -> None:
        """The saved optimiser state has this optimiser's groups, and each parameter's state tensors its shape."""
        # The structure a fresh trainer's optimiser has (GRPOTrainer: Adam over the policy's parameters); an
        # optimiser without steps holds no state, so this costs nothing and touches no weights.
        fresh = torch.optim.Adam(self.policy.parameters())
        ours = fresh.state_dict()
        if not isinstance(saved, Mapping) or set(saved) != {"state", "param_groups"}:
            raise ValueError("checkpoint 'optimizer' must hold 'state' and 'param_groups'")
        groups = saved["param_groups"]
        if (not isinstance(groups, list) or len(groups) != len(ours["param_groups"])
                or any(not isinstance(g, Mapping) or list(g.get("params", ())) != list(o["params"])
                       for g, o in zip(groups, ours["param_groups"]))):
            raise ValueError("checkpoint 'optimizer' has other parameter groups than this env's optimiser")
        shapes = dict(zip((i for g in ours["param_groups"] for i in g["params"]),
                          (tuple(p.shape) for g in fresh.param_groups for p in g["params"])))
        if not isinstance(saved["state"], Mapping):
            raise ValueError("checkpoint 'optimizer' state must be a mapping")
        for index, entry in saved["state"].items():
            if index not in shapes or not isinstance(entry, Mapping):
                raise ValueError(f"checkpoint 'optimizer' has state for an unknown parameter {index!r:.40}")
            for name, value in entry.items():
                if not isinstance(value, torch.Tensor):
                    raise ValueError(f"checkpoint 'optimizer' state {index}.{name} is not a tensor")
                if value.dim() and tuple(value.shape) != shapes[index]:
                    raise ValueError(f"checkpoint 'optimizer' state {index}.{name} has shape {tuple(value.shape)}, "
                                     f"expected {shapes[index]}")

    def _world_load_state(self, state: Mapping[str, Any]) -> None:
        # The trainer is rebuilt from the initial weights first, so a KL reference is the initial policy.
        self.policy.load_state_dict(self._initial_state)
        self.trainer = GRPOTrainer(self.policy, self.grpo_config, self.tokenizer.pad_token_id)
        self.policy.load_state_dict(state["policy"])
        self.trainer.optimizer.load_state_dict(state["optimizer"])
        self.engine.load_weights(self.policy.state_dict())
        self._generator = torch.Generator()
        self._generator.set_state(state["generator"])
        self._eval_seed = int(state["eval_seed"])
        self._timeouts_at_reset = self._verifier_timeouts() - int(state["verifier_timeouts"])
