"""The embedded world's tiny reasoning policy: a character tokenizer, a small Llama, and its warm start.

The warm start is supervised fine-tuning on problems drawn from the task mix, stopped by a *competence
target* rather than a step count: SFT on these tasks goes through a sharp phase transition, and RL only
has something to do if it starts from partial competence (docs/world.md, "Pool composition"). Competence
is the mean probability the model assigns to the reference answer, which for tasks with one correct
answer is exactly its expected sampled accuracy at temperature 1, and costs one forward pass.

The result is deterministic in its config and cached on disk (``~/.cache/gps_env`` or ``$GPS_ENV_CACHE``)
under a hash of that config, saved with ``save_pretrained`` (safetensors).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from gps_env.tasks import TaskMix, default_mix
from gps_env.tasks.reasoning_gym import reasoning_gym_mix, reasoning_gym_v1_mix

SPECIAL_TOKENS = ["<pad>", "<bos>", "<eos>"]
CHARACTERS = list("0123456789+-*=,:>() ")
WARM_START_VERSION = 1  # bump when the recipe changes, so stale caches are not reused


def build_tokenizer(kind: str = "char", corpus: list[str] | None = None, vocab_size: int = 512
                    ) -> PreTrainedTokenizerFast:
    """The policy's tokenizer; pads on the left.

    ``"char"``: one token per character of digits, operators and punctuation (the arithmetic world).
    ``"bpe"``: byte-level BPE of ``vocab_size`` tokens trained on ``corpus``, with every digit its own token
    (merged digits make arithmetic needlessly hard); natural-language prompts are about 2.5x shorter than in
    characters, which is what makes a tiny policy affordable on them.
    """
    if kind == "char":
        vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + CHARACTERS)}
        core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
        core.pre_tokenizer = pre_tokenizers.Split(pattern=Regex("."), behavior="isolated")
        core.decoder = decoders.Fuse()
    elif kind == "bpe":
        if not corpus:
            raise ValueError("a BPE tokenizer needs a corpus to train on")
        core = Tokenizer(models.BPE())
        core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                      pre_tokenizers.ByteLevel(add_prefix_space=False)])
        core.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        core.train_from_iterator(corpus, trainer=trainer)
    else:
        raise ValueError(f"tokenizer must be 'char' or 'bpe', got {kind!r}")
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<pad>",
        padding_side="left",
    )


def encode(tokenizer: PreTrainedTokenizerFast, text: str) -> list[int]:
    """Token ids of ``text`` with the BOS prepended (the tokenizer itself adds no special tokens)."""
    return [tokenizer.bos_token_id, *tokenizer(text, add_special_tokens=False)["input_ids"]]


@dataclass(frozen=True)
class PolicyConfig:
    """Architecture and warm-start recipe of the tiny policy (the cache key is a hash of all of it)."""

    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 384
    max_positions: int = 64
    # Warm start (SFT).
    seed: int = 0
    batch_size: int = 128
    lr: float = 2e-3
    min_lr: float = 2e-4
    warmup_steps: int = 50
    schedule_steps: int = 1000
    max_steps: int = 1000
    competence_target: float = 0.5
    check_every: int = 25
    check_size: int = 512
    mix: str = "default"  # name of the task mix; see ``mixes()``
    # Added for the Reasoning Gym world; left out of the cache key at these defaults, so earlier caches stay valid.
    tokenizer: str = "char"  # "char" or "bpe" (trained on ``tokenizer_corpus`` prompts of the mix)
    vocab_size: int = 512
    tokenizer_corpus: int = 20000
    #: Stop on the pass-rate shape instead of the mean competence: once the expected share of check prompts
    #: whose k = 8 group is mixed, mean(1 - p^8 - (1 - p)^8), reaches this (None: stop on ``competence_target``).
    mixed_target: float | None = None

    def key(self) -> str:
        mix = mixes()[self.mix].describe() if self.mix in mixes() else None
        fields = dataclasses.asdict(self)
        for name, default in _LATER_FIELDS.items():
            if fields[name] == default:
                del fields[name]
        blob = json.dumps({**fields, "mix_spec": mix, "v": WARM_START_VERSION}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]


_LATER_FIELDS = {"tokenizer": "char", "vocab_size": 512, "tokenizer_corpus": 20000, "mixed_target": None}
#: The Reasoning Gym world's policy: BPE tokens, longer positions, a wider MLP, stopped on the pass-rate shape.
REASONING_GYM_POLICY = PolicyConfig(mix="reasoning_gym", tokenizer="bpe", intermediate_size=512, max_positions=160,
                                    batch_size=64, max_steps=3000, schedule_steps=3000, check_every=100,
                                    mixed_target=0.4)


#: Task mixes of the Reasoning Gym world's versions; all share :data:`REASONING_GYM_POLICY`, trained on v0's mix.
REASONING_GYM_MIXES = ("reasoning_gym", "reasoning_gym_v1")


def default_policy(mix: str) -> PolicyConfig:
    """The warm-start recipe of a task mix's world (both Reasoning Gym versions start from the same shipped
    policy: v1 only redraws the pool's levels)."""
    return REASONING_GYM_POLICY if mix in REASONING_GYM_MIXES else PolicyConfig(mix=mix)


class _Mixes(Mapping[str, TaskMix]):
    """Task mixes by name, each built fresh on access (its verifiers count their own timeouts)."""

    _factories = {"default": default_mix, "reasoning_gym": reasoning_gym_mix, "reasoning_gym_v1": reasoning_gym_v1_mix}

    def __getitem__(self, name: str) -> TaskMix:
        return self._factories[name]()

    def __iter__(self) -> Iterator[str]:
        return iter(self._factories)

    def __len__(self) -> int:
        return len(self._factories)


def mixes() -> Mapping[str, TaskMix]:
    """Task mixes a warm start can be trained on, by name: ``"default"`` (the arithmetic world),
    ``"reasoning_gym"`` (:func:`gps_env.tasks.reasoning_gym.reasoning_gym_mix`, the Reasoning Gym world v0) and
    ``"reasoning_gym_v1"`` (:func:`gps_env.tasks.reasoning_gym.reasoning_gym_v1_mix`, v1: more easy levels)."""
    return _Mixes()


def build_model(config: PolicyConfig, vocab_size: int, tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    torch.manual_seed(config.seed)
    model_config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads,
        max_position_embeddings=config.max_positions,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return LlamaForCausalLM(model_config)


def supervised_batch(
    tokenizer: PreTrainedTokenizerFast, pairs: list[tuple[str, str]]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ``(input_ids, attention_mask, labels)`` with the loss on answer + EOS only."""
    rows, label_rows = [], []
    for prompt, answer in pairs:
        p = encode(tokenizer, prompt)
        a = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        rows.append(p + a)
        label_rows.append([-100] * len(p) + a)
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (row, lab) in enumerate(zip(rows, label_rows)):
        ids[i, : len(row)] = torch.tensor(row)
        labels[i, : len(lab)] = torch.tensor(lab)
        mask[i, : len(row)] = 1
    return ids, mask, labels


@torch.no_grad()
def answer_probability(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, pairs: list[tuple[str, str]]
) -> np.ndarray:
    """Per-pair probability of generating exactly ``answer`` + EOS after ``prompt`` at temperature 1."""
    ids, mask, labels = supervised_batch(tokenizer, pairs)
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    targets = labels[:, 1:]
    logp = torch.log_softmax(logits, -1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    logp = (logp * (targets != -100)).sum(-1)
    return logp.exp().numpy()


def warm_start(
    config: PolicyConfig | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Return the directory of the warm-started policy, training and caching it on first use.

    The directory holds the model and tokenizer (``from_pretrained`` loads both) and ``warm_start.json``
    with the recipe, the step SFT stopped at, the competence reached and the seconds it took.
    """
    config = config or PolicyConfig()
    packaged = shipped(config)
    if packaged is not None:
        return packaged
    root = Path(cache_dir or os.environ.get("GPS_ENV_CACHE") or Path.home() / ".cache" / "gps_env")
    out = root / f"policy-{config.key()}"
    if (out / "warm_start.json").exists():
        return out
    if config.mix not in mixes():
        raise ValueError(f"unknown task mix {config.mix!r}; known: {sorted(mixes())}")
    mix = mixes()[config.mix]
    corpus = None
    if config.tokenizer == "bpe":  # trained on the mix's own text, deterministically in the seed
        corpus_rng = np.random.default_rng([config.seed, 9])
        corpus = [f"{p.prompt}{p.answer}" for p in (mix.sample(corpus_rng) for _ in range(config.tokenizer_corpus))]
    tokenizer = build_tokenizer(config.tokenizer, corpus, config.vocab_size)
    model = build_model(config, len(tokenizer), tokenizer)
    rng = np.random.default_rng([config.seed, 7])
    check_problems = mix.sample_unique(config.check_size, np.random.default_rng([config.seed, 8]))
    check = [(p.prompt, p.answer) for p in check_problems]
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=(0.9, 0.98), weight_decay=0.01)

    def lr_at(step: int) -> float:
        if step < config.warmup_steps:
            return config.lr * (step + 1) / config.warmup_steps
        t = min(1.0, (step - config.warmup_steps) / max(1, config.schedule_steps - config.warmup_steps))
        return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * t))

    from tqdm.auto import tqdm

    start, competence, step, history = time.perf_counter(), 0.0, 0, []
    bar = tqdm(total=config.max_steps, desc="warm start (SFT)", disable=not progress, leave=False)
    for step in range(1, config.max_steps + 1):
        model.train()
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step - 1)
        batch = [(p.prompt, p.answer) for p in (mix.sample(rng) for _ in range(config.batch_size))]
        ids, mask, labels = supervised_batch(tokenizer, batch)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        bar.update(1)
        if step % config.check_every == 0:
            model.eval()
            probability = answer_probability(model, tokenizer, check)
            competence = float(probability.mean())
            solved, unsolved = float((probability**8).mean()), float(((1 - probability) ** 8).mean())
            mixed = 1.0 - solved - unsolved
            history.append({"step": step, "loss": round(loss.item(), 4), "competence": round(competence, 4),
                            "solved_at_8": round(solved, 4), "unsolved_at_8": round(unsolved, 4),
                            "mixed_at_8": round(mixed, 4)})
            bar.set_postfix(loss=f"{loss.item():.3f}", competence=f"{competence:.3f}", mixed=f"{mixed:.3f}")
            if (mixed >= config.mixed_target if config.mixed_target is not None
                    else competence >= config.competence_target):
                break
    bar.close()
    tmp = root / f".tmp-{config.key()}-{os.getpid()}"
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    record = {
        "config": dataclasses.asdict(config),
        "version": WARM_START_VERSION,
        "stopped_at_step": step,
        "competence": competence,
        "seconds": time.perf_counter() - start,
        "parameters": sum(p.numel() for p in model.parameters()),
        "history": history,
    }
    (tmp / "warm_start.json").write_text(json.dumps(record, indent=2))
    tmp.replace(out) if not out.exists() else None
    return out


#: Warm starts that ship with the package (``gps-env warm-start --ship`` writes them), one directory per config key.
PRETRAINED = Path(__file__).parent / "pretrained"
DIGESTS = "SHA256SUMS.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def shipped(config: PolicyConfig) -> Path | None:
    """The packaged warm start of ``config``, its files checked against their digests; None if none ships.

    Raises:
        ValueError: a file missing, unlisted or whose sha256 differs from ``SHA256SUMS.json`` (named).
    """
    path = PRETRAINED / f"policy-{config.key()}"
    if not path.is_dir():
        return None
    try:
        listed = json.loads((path / DIGESTS).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path / DIGESTS}: unreadable digest list ({exc})") from None
    if not isinstance(listed, dict) or not all(isinstance(v, str) for v in listed.values()):
        raise ValueError(f"{path / DIGESTS}: expected an object of file name -> sha256")
    present = {f.name for f in path.iterdir() if f.is_file() and f.name != DIGESTS}
    for name in sorted(present - set(listed)):
        raise ValueError(f"{path / name}: not listed in {DIGESTS} (a shipped warm start holds only listed files)")
    for name, digest in sorted(listed.items()):
        if name not in present:
            raise ValueError(f"{path / name}: listed in {DIGESTS} but missing")
        if _sha256(path / name) != digest:
            raise ValueError(f"{path / name}: sha256 differs from {DIGESTS} (damaged or altered)")
    return path


def ship(config: PolicyConfig, progress: bool = True) -> Path:
    """Train (or take from the cache) ``config``'s warm start and copy it into the package with its digests."""
    import shutil

    source = warm_start(config, progress=progress)
    out = PRETRAINED / f"policy-{config.key()}"
    if source == out:
        return out
    out.mkdir(parents=True, exist_ok=True)
    digests = {}
    for file in sorted(source.iterdir()):
        if file.is_file():
            shutil.copyfile(file, out / file.name)
            digests[file.name] = _sha256(out / file.name)
    (out / DIGESTS).write_text(json.dumps(digests, indent=1, sort_keys=True) + "\n")
    return out


def load_policy(
    path: str | Path,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype | None = None,
    gradient_checkpointing: bool = False,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM checkpoint directory (the embedded policy or any local Hugging Face model) and its
    tokenizer, in eval mode. Weights load from safetensors only (no pickle).

    Args:
        path: a directory with ``config.json``, ``*.safetensors`` and the tokenizer files.
        device: where the model lives (``"cuda"`` for a GPU run).
        dtype: ``None`` (as saved, float32 for the embedded policy), ``"bfloat16"``, ``"float16"``,
            ``"float32"`` or a ``torch.dtype``.
        gradient_checkpointing: recompute activations in the backward pass (for large models).
    """
    if isinstance(dtype, str):
        if dtype not in ("bfloat16", "float16", "float32"):
            raise ValueError(f"dtype must be bfloat16, float16, float32 or None, got {dtype!r}")
        dtype = getattr(torch, dtype)
    model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True, dtype=dtype).to(device)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:  # many chat models ship without one; padding is masked anyway
        tokenizer.pad_token = tokenizer.eos_token
    if gradient_checkpointing:
        enable_checkpointing(model)
    return model.eval(), tokenizer


def enable_checkpointing(model: PreTrainedModel) -> None:
    """Recompute activations in the backward pass (transformers >= 5 calls it activation checkpointing)."""
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable()
    model.config.use_cache = False
