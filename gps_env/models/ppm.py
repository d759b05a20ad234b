"""The prompt predictive model (PPM) of GPS: a latent-variable model of every prompt's success.

Qu et al., 2026 (arXiv 2602.01970, §3.2). The official code is not available; every choice the paper
leaves open is a field of :class:`PPMConfig` and is marked "ours" below.

    prior       p_η(z_t | H_{t-1}) = N(μ, σ²)   set Transformer over the last batch's (e_τ, s_τ)
    posterior   q_φ(z_t | H_t)     = N(μ, σ²)   set Transformer over the current batch's (e_τ, s_τ)
    decoder     p_ψ(s | τ, z)      = Binomial(k, sigmoid(MLP(e_τ ⊕ z)))            (ours: Binomial)
    ELBO_t      = E_q[Σ_τ log p_ψ(k s_τ | τ, z)] − KL(q_φ ‖ p_η)
    predict     γ̂_τ = mean_m sigmoid(MLP(e_τ ⊕ z_m)),  z_m ~ p_η(z | H_t)

With no history yet the prior is N(0, I) (the ancestors' rule, MPTS/PDTS). σ = 0.1 + 0.9·sigmoid(·) as in
the ancestors' encoders. The first decoder layer is split, ``W [e; z] = W_e e + W_z z``, so predicting a
40k-prompt pool costs one (N × d) product per step plus O(M·N·h).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

#: Rows per chunk in :meth:`PPM.predict` (4096 x M x hidden float32 activations: a few MiB).
PREDICT_CHUNK = 4096


@dataclass(frozen=True)
class PPMConfig:
    """Size and training knobs of the PPM (defaults are CPU-sensible; the paper's PPM has about 20M
    parameters on GPUs, ours about 0.2M so that a step at N = 40k fits in half a second on 2 cores).

    Attributes:
        hidden: width of encoders and decoder.
        latent: dimension of z.
        layers: Transformer layers per set encoder.
        heads: attention heads.
        samples: M, prior samples averaged in a prediction.
        lr: Adam learning rate.
        updates: ELBO gradient steps after each RL step.
        replay: most recent (history, batch) pairs each update trains on (1 = the newest only).
        kl_weight: β on the KL term (1 = the true ELBO).
        latent_mode: ``"stochastic"`` (GPS) or ``"none"``: ablation without a latent, the decoder sees only
            the prompt (a deterministic per-prompt predictor trained on the same likelihood).
        set_size: the set encoders read at most this many members of a batch, drawn at random without
            replacement each time a set is encoded (ours; default 64, None: all). The likelihood still
            covers every prompt of the batch. Attention over a set costs O(B²): at B = 256 the two encoders
            were most of a GPS step on 2 cores, and with 64 members GPS's ESR, Spearman and accuracy in the
            simulated world are those of the whole batch within the seed noise
            (``python benchmarks/set_size.py``; docs/gps.md, "Speed at paper scale"). Sets no larger than
            ``set_size`` are read whole, with no random draw, so B ≤ 64 is unchanged by it.
    """

    hidden: int = 64
    latent: int = 16
    layers: int = 2
    heads: int = 4
    samples: int = 4
    lr: float = 1e-3
    updates: int = 2
    replay: int = 4
    kl_weight: float = 1.0
    latent_mode: str = "stochastic"
    set_size: int | None = 64

    def __post_init__(self) -> None:
        """Raise ``ValueError`` naming the field unless every field is of its type and in its range."""
        if not isinstance(self.latent_mode, str) or self.latent_mode not in ("stochastic", "none"):
            raise ValueError(f"latent_mode must be 'stochastic' or 'none', got {self.latent_mode!r:.80}")
        for name in ("hidden", "latent", "layers", "heads", "samples", "updates", "replay", "set_size"):
            value = getattr(self, name)
            if name == "set_size" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 1 <= value < 2**31:
                raise ValueError(f"{name} must be an integer in [1, 2**31), got {value!r:.80}")
            if type(value) is not int:  # a numpy integer: torch's shapes want Python ints
                object.__setattr__(self, name, int(value))
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        for name, positive in (("lr", True), ("kl_weight", False)):
            value = getattr(self, name)
            try:
                finite = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)
            except OverflowError:  # an integer beyond float range
                finite = False
            if not finite or not (value > 0 if positive else value >= 0):
                raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r:.80}")
            if type(value) not in (int, float):
                object.__setattr__(self, name, float(value))


class SetEncoder(nn.Module):
    """Permutation-invariant encoder of a batch's {(e_τ, s_τ)} into a diagonal Gaussian over z."""

    def __init__(self, embed_dim: int, config: PPMConfig) -> None:
        super().__init__()
        self.inp = nn.Linear(embed_dim + 1, config.hidden)
        layer = nn.TransformerEncoderLayer(
            config.hidden, config.heads, dim_feedforward=2 * config.hidden, dropout=0.0, batch_first=True,
            norm_first=True,
        )
        self.body = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.out = nn.Linear(config.hidden, 2 * config.latent)

    def forward(self, embeddings: torch.Tensor, success: torch.Tensor) -> torch.distributions.Normal:
        """Sets of shape (R, B, d) and (R, B) give a Normal over (R, latent); unbatched inputs give (latent,)."""
        single = embeddings.ndim == 2
        if single:
            embeddings, success = embeddings.unsqueeze(0), success.unsqueeze(0)
        tokens = self.inp(torch.cat([embeddings, success.unsqueeze(-1)], -1))
        pooled = self.body(tokens).mean(dim=1)
        mu, raw = self.out(pooled).chunk(2, -1)
        if single:
            mu, raw = mu.squeeze(0), raw.squeeze(0)
        return torch.distributions.Normal(mu, 0.1 + 0.9 * torch.sigmoid(raw))


class _DecoderScratch:
    """Activation buffers of :meth:`PPM.predict` for chunks of up to ``rows`` rows (a shorter chunk uses the
    front of each)."""

    def __init__(self, rows: int, config: PPMConfig, samples: int) -> None:
        m, h = samples, config.hidden
        self._projected, self._pre = torch.empty(rows, h), torch.empty(m * rows * h)
        self._post, self._logit = torch.empty(m * rows * h), torch.empty(m * rows)
        self._m, self._h = m, h

    def views(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        m, h = self._m, self._h
        return (self._projected[:n], self._pre[: m * n * h].view(m, n, h), self._post[: m * n * h].view(m * n, h),
                self._logit[: m * n].view(m * n, 1))


class PPM(nn.Module):
    """Prior and posterior set encoders and a shared decoder (see the module docstring)."""

    def __init__(self, embed_dim: int, config: PPMConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or PPMConfig()
        self.embed_dim = embed_dim
        self.stochastic = config.latent_mode == "stochastic"
        self.prior_encoder = SetEncoder(embed_dim, config) if self.stochastic else None
        self.posterior_encoder = SetEncoder(embed_dim, config) if self.stochastic else None
        self.decode_e = nn.Linear(embed_dim, config.hidden)
        self.decode_z = nn.Linear(config.latent, config.hidden, bias=False) if self.stochastic else None
        self.decode_rest = nn.Sequential(nn.GELU(), nn.Linear(config.hidden, config.hidden), nn.GELU(),
                                         nn.Linear(config.hidden, 1))

    def encoded_set(self, embeddings: torch.Tensor, success: torch.Tensor,
                    generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The members of a set (or of each of a stack of sets) a set encoder reads: all of them, or a random
        ``config.set_size`` of each (ours; see :class:`PPMConfig`). A draw needs ``generator``."""
        cap = self.config.set_size
        if cap is None or success.shape[-1] <= cap:
            return embeddings, success
        if generator is None:
            raise ValueError(f"a set of {success.shape[-1]} members with set_size {cap} needs a generator")
        keep = torch.rand(success.shape, generator=generator).argsort(dim=-1)[..., :cap]
        rows = keep.unsqueeze(-1).expand(*keep.shape, embeddings.shape[-1])
        return embeddings.gather(-2, rows), success.gather(-1, keep)

    def prior(
        self, history: tuple[torch.Tensor, torch.Tensor] | None, has_history: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.distributions.Normal:
        """p_η(z | H): N(0, I) without history, else the prior encoder over the last batch.

        For a stack of R histories, ``has_history`` (R,) marks which are real; the others get N(0, I).
        ``generator`` draws the members the encoder reads when the set is larger than ``config.set_size``.
        """
        if history is None:
            zeros = torch.zeros(self.config.latent)
            return torch.distributions.Normal(zeros, torch.ones(self.config.latent))
        prior = self.prior_encoder(*self.encoded_set(*history, generator))
        if has_history is None:
            return prior
        real = has_history.unsqueeze(-1)
        return torch.distributions.Normal(torch.where(real, prior.loc, 0.0), torch.where(real, prior.scale, 1.0))

    def logits(self, embeddings: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        """Success logits. (N, d) embeddings under (M, latent) latents give (M, N); (R, B, d) sets under one
        latent each, (R, latent), give (R, B). Without a latent the leading dimension is 1 or R."""
        hidden = self.decode_e(embeddings)
        if embeddings.ndim == 2:
            hidden = hidden.unsqueeze(0)
        if z is not None and self.decode_z is not None:
            hidden = hidden + self.decode_z(z).unsqueeze(1)
        return self.decode_rest(hidden).squeeze(-1)

    def sample_prior(self, history: tuple[torch.Tensor, torch.Tensor] | None, generator: torch.Generator,
                     samples: int | None = None) -> torch.Tensor:
        """The M latent draws z_m ~ p_η(z | H) of one prediction, shape (M, latent) (M: ``samples`` if given,
        else the config's)."""
        prior = self.prior(history, generator=generator)
        eps = torch.randn((samples or self.config.samples, self.config.latent), generator=generator)
        return prior.loc + prior.scale * eps

    @torch.no_grad()
    def predict(
        self,
        embeddings: torch.Tensor,
        history: tuple[torch.Tensor, torch.Tensor] | None,
        generator: torch.Generator,
        samples: int | None = None,
    ) -> torch.Tensor:
        """γ̂ for every row of ``embeddings``: the decoder's success probability averaged over M prior draws
        (``samples``: M for this call; 1 is a Thompson-style draw of one latent)."""
        if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int) or samples < 1):
            raise ValueError(f"samples must be a positive integer or None, got {samples!r:.80}")
        if not self.stochastic:
            return torch.sigmoid(self.logits(embeddings, None)).squeeze(0)
        draws = samples or self.config.samples
        latent = self.decode_z(self.sample_prior(history, generator, draws)).unsqueeze(1)
        # In chunks of rows (the activations stay in cache), through buffers allocated once per call: fresh
        # 4 MiB tensors for each op are handed back to the OS between agent steps and page-faulted in again
        # (benchmarks/predict_memory.py). Bit-identical to sigmoid(logits(rows, z)).mean(0) chunk by chunk:
        # the same ops on the same operands (tests/test_gps.py).
        out = torch.empty(embeddings.shape[0])
        scratch = _DecoderScratch(min(PREDICT_CHUNK, embeddings.shape[0]), self.config, draws)
        for start in range(0, embeddings.shape[0], PREDICT_CHUNK):
            rows = embeddings[start : start + PREDICT_CHUNK]
            out[start : start + PREDICT_CHUNK] = self._mean_probability(rows, latent, scratch)
        return out

    def _mean_probability(self, rows: torch.Tensor, latent: torch.Tensor, scratch: _DecoderScratch) -> torch.Tensor:
        """mean_m sigmoid(logits(rows, z_m)) with ``latent`` = decode_z(z).unsqueeze(1), written into scratch."""
        first, second, last = self.decode_e, self.decode_rest[1], self.decode_rest[3]
        samples, n, hidden = latent.shape[0], rows.shape[0], self.config.hidden
        projected, pre, post, logit = scratch.views(n)
        torch.addmm(first.bias, rows, first.weight.t(), out=projected)  # what nn.Linear runs for 2-D input
        torch.add(projected.unsqueeze(0), latent, out=pre)
        torch.ops.aten.gelu_(pre)
        torch.addmm(second.bias, pre.view(samples * n, hidden), second.weight.t(), out=post)
        torch.ops.aten.gelu_(post)
        torch.addmm(last.bias, post, last.weight.t(), out=logit)
        return torch.sigmoid(logit.view(samples, n)).mean(0)

    def negative_elbo(
        self,
        embeddings: torch.Tensor,
        success: torch.Tensor,
        k: int,
        history: tuple[torch.Tensor, torch.Tensor] | None,
        generator: torch.Generator,
        has_history: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """−ELBO per prompt (Binomial likelihood of k·s successes), averaged over a stack of batches.

        Shapes: one batch (B, d), (B,) with history (B', d), (B',) or None; or R batches at once,
        (R, B, d), (R, B) with histories (R, B, d), (R, B) and ``has_history`` (R,) (False: prior N(0, I)).
        """
        if embeddings.ndim == 2:
            embeddings, success = embeddings.unsqueeze(0), success.unsqueeze(0)
            if history is not None:
                history = (history[0].unsqueeze(0), history[1].unsqueeze(0))
        sets, size = success.shape
        if self.stochastic:
            posterior = self.posterior_encoder(*self.encoded_set(embeddings, success, generator))
            eps = torch.randn((sets, self.config.latent), generator=generator)
            z = posterior.loc + posterior.scale * eps
            prior = self.prior(history, has_history, generator)
            kl = torch.distributions.kl_divergence(posterior, prior).sum() / sets
        else:
            z, kl = None, torch.zeros(())
        logit = self.logits(embeddings, z).reshape(sets, size)
        nll = k * F.binary_cross_entropy_with_logits(logit, success, reduction="sum") / sets
        loss = (nll + self.config.kl_weight * kl) / size
        return loss, {"nll": float(nll.detach()) / size, "kl": float(kl.detach())}
