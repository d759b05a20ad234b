"""A prompt pool: problems, their verifiers and their (static) WordLlama embeddings."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from gps_env.tasks import Problem, Task


def _cache_root() -> Path:
    return Path(os.environ.get("GPS_ENV_CACHE") or Path.home() / ".cache" / "gps_env")


def embed_texts(texts: Sequence[str], dim: int = 256) -> np.ndarray:
    """L2-normalised WordLlama embeddings (the model ships in the wheel; nothing is downloaded)."""
    import wordllama
    from wordllama import WordLlama

    model = WordLlama.load(dim=dim, cache_dir=Path(wordllama.__file__).parent, disable_download=True)
    with np.errstate(invalid="ignore", divide="ignore"):  # empty strings: handled just below
        vectors = np.asarray(model.embed(list(texts), norm=True), dtype=np.float32)
    # WordLlama returns NaN for an empty string: such rows become the zero vector (cosine distance 1 to all).
    vectors[~np.isfinite(vectors).all(axis=1)] = 0.0
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.where(norms > 0, vectors / np.maximum(norms, 1e-12), 0.0).astype(np.float32)


class PromptPool:
    """N problems with stable ids, the tasks that verify them, and lazily computed embeddings.

    Args:
        problems: the prompts; ids (``Problem.uid``) must be distinct.
        tasks: verifier for every task name the problems use.
        embedding_dim: WordLlama dimension (64, 128, 256, ...).
    """

    def __init__(self, problems: Sequence[Problem], tasks: Mapping[str, Task] | Sequence[Task],
                 embedding_dim: int = 256) -> None:
        if not problems:
            raise ValueError("a pool needs at least one problem")
        self.problems = list(problems)
        self.tasks = dict(tasks) if isinstance(tasks, Mapping) else {t.name: t for t in tasks}
        missing = {p.task for p in self.problems} - set(self.tasks)
        if missing:
            raise ValueError(f"no verifier for tasks {sorted(missing)}")
        self.ids = [p.uid for p in self.problems]
        if len(set(self.ids)) != len(self.ids):
            raise ValueError("pool problems must be distinct (duplicate task + prompt)")
        self.embedding_dim = embedding_dim
        self._embeddings: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.problems)

    def __getitem__(self, index: int) -> Problem:
        return self.problems[index]

    @property
    def prompts(self) -> list[str]:
        return [p.prompt for p in self.problems]

    def verify(self, index: int, completion: str) -> float:
        problem = self.problems[index]
        return self.tasks[problem.task].verify(completion, problem)

    @property
    def embeddings(self) -> np.ndarray:
        """(N, embedding_dim) float32, L2-normalised; cached on disk by a hash of the prompt texts."""
        if self._embeddings is None:
            digest = hashlib.sha1("\x00".join(self.prompts).encode()).hexdigest()[:16]
            path = _cache_root() / "embeddings" / f"wordllama{self.embedding_dim}-{digest}.npy"
            if path.exists():
                self._embeddings = np.load(path, allow_pickle=False)
            else:
                self._embeddings = embed_texts(self.prompts, self.embedding_dim)
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.npy")
                np.save(tmp, self._embeddings)
                tmp.replace(path)
        return self._embeddings
