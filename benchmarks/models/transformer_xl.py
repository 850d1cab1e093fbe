"""A Transformer-XL language model (Dai et al., 2019) in plain torch modules, optionally weight-normalised.

What is reproduced from the paper's WikiText-103 "base" model (the ``attn_type=0`` variant):

* segment-level recurrence: every layer also attends to the cached hidden states (``mems``) of the previous
  segment(s); the cache is detached, so gradients stop at the segment boundary;
* relative positional attention: ``score(i, j) = (q_i + u)·k_j + (q_i + v)·R_{i-j}`` with learned global
  biases ``u = r_w_bias`` and ``v = r_r_bias`` and sinusoidal ``R`` projected by ``r_net``; the
  ``(q_i + v)·R`` term is computed for all positions at once and aligned by :func:`rel_shift`;
* adaptive input and adaptive softmax (Baevski & Auli; Grave et al.) with tied weights, so a 267k-word
  vocabulary costs one embedding table;
* post-LayerNorm residual blocks, ReLU feed-forward, the paper's initialisation (N(0, 0.02)).

The "+ WN" variant (the AdamP paper's Table 7) re-parametrises every linear layer of the transformer blocks
with :func:`torch.nn.utils.parametrizations.weight_norm` (per output unit): ``W = g * V / ||V||``. The
direction ``V`` (``parametrizations.weight.original1``) is then scale-invariant, which is the case AdamP's
projection is designed for; without WN no weight of this model is scale-invariant.

Tensors are batch-first: inputs ``(B, T)``, hidden states and memories ``(B, T, d_model)``.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm as _weight_norm


def rel_shift(x: torch.Tensor) -> torch.Tensor:
    """Align relative-position scores: ``out[..., i, j] = x[..., i, j + qlen - 1 - i]``.

    ``x[..., i, t]`` is the score of query ``i`` against relative position ``klen-1-t`` (positions are listed in
    decreasing order). Query ``i`` sits at key index ``mlen + i``, so key ``j`` is at distance
    ``mlen + i - j``, i.e. column ``t = qlen - 1 - i + j``. Padding one zero column and re-viewing the buffer
    performs that per-row shift without gathering; entries with ``j > mlen + i`` (future keys) come out as
    junk and must be masked by the caller.
    """
    *lead, qlen, klen = x.shape
    padded = F.pad(x, (1, 0))  # (..., qlen, klen + 1)
    padded = padded.reshape(*lead, klen + 1, qlen)
    return padded[..., 1:, :].reshape(*lead, qlen, klen)


def attention_mask(qlen: int, mlen: int, device: torch.device, same_length: bool = False,
                   window: int | None = None) -> torch.Tensor:
    """Boolean ``(qlen, mlen + qlen)`` mask, True where query ``i`` must NOT see key ``j``.

    Keys after the query (distance < 0) are hidden. With ``same_length`` every query sees the same number of
    keys, ``window`` (the memory length): keys at distance >= window are hidden too, as in Transformer-XL's
    evaluation setting.
    """
    i = torch.arange(qlen, device=device)[:, None]
    j = torch.arange(mlen + qlen, device=device)[None, :]
    dist = mlen + i - j
    mask = dist < 0
    if same_length and window is not None and window > 0:
        mask = mask | (dist >= window)
    return mask


class PositionalEmbedding(nn.Module):
    """Sinusoidal embedding of (relative) positions, ``[sin(p·f), cos(p·f)]``."""

    def __init__(self, d_model: int):
        super().__init__()
        if d_model % 2:
            raise ValueError(f"d_model must be even for the sinusoidal embedding, got {d_model}")
        inv_freq = 1.0 / (10000 ** (torch.arange(0, d_model, 2, dtype=torch.float32) / d_model))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, pos_seq: torch.Tensor) -> torch.Tensor:
        sinusoid = torch.outer(pos_seq.float(), self.inv_freq)
        return torch.cat([sinusoid.sin(), sinusoid.cos()], dim=-1)


class RelMultiHeadAttn(nn.Module):
    """Multi-head attention with Transformer-XL's relative positions and memory (residual + LayerNorm)."""

    def __init__(self, d_model: int, n_head: int, d_head: int, dropout: float, dropatt: float = 0.0,
                 pre_lnorm: bool = False):
        super().__init__()
        self.n_head, self.d_head = n_head, d_head
        self.qkv_net = nn.Linear(d_model, 3 * n_head * d_head, bias=False)
        self.r_net = nn.Linear(d_model, n_head * d_head, bias=False)
        self.o_net = nn.Linear(n_head * d_head, d_model, bias=False)
        self.drop = nn.Dropout(dropout)
        self.dropatt = dropatt
        self.layer_norm = nn.LayerNorm(d_model)
        self.pre_lnorm = pre_lnorm
        self.scale = 1.0 / math.sqrt(d_head)

    def forward(self, h: torch.Tensor, r: torch.Tensor, r_w_bias: torch.Tensor, r_r_bias: torch.Tensor,
                mask: torch.Tensor, mems: torch.Tensor | None = None) -> torch.Tensor:
        """``h`` (B, qlen, d), ``r`` (klen, d) embeddings of distances klen-1..0, ``mask`` (qlen, klen)."""
        bsz, qlen, _ = h.shape
        cat = h if mems is None or mems.size(1) == 0 else torch.cat([mems, h], dim=1)
        klen = cat.size(1)
        w_heads = self.qkv_net(self.layer_norm(cat) if self.pre_lnorm else cat)
        q, k, v = w_heads.view(bsz, klen, 3, self.n_head, self.d_head).unbind(2)
        q = q[:, -qlen:].transpose(1, 2)  # (B, H, qlen, dh)
        k, v = k.transpose(1, 2), v.transpose(1, 2)  # (B, H, klen, dh)
        r_k = self.r_net(r).view(klen, self.n_head, self.d_head).permute(1, 2, 0)  # (H, dh, klen)
        # position term (q + v)·R, aligned per query; added to the content term inside the fused attention
        bd = rel_shift(torch.matmul(q + r_r_bias[:, None, :].to(q.dtype), r_k.to(q.dtype)))
        bias = (bd * self.scale).masked_fill(mask, float("-inf"))
        out = F.scaled_dot_product_attention(
            (q + r_w_bias[:, None, :].to(q.dtype)).to(v.dtype), k, v, attn_mask=bias.to(v.dtype),
            dropout_p=self.dropatt if self.training else 0.0, scale=self.scale)
        out = self.drop(self.o_net(out.transpose(1, 2).reshape(bsz, qlen, self.n_head * self.d_head)))
        return h + out if self.pre_lnorm else self.layer_norm(h + out)


class PositionwiseFF(nn.Module):
    """ReLU feed-forward block with residual and LayerNorm."""

    def __init__(self, d_model: int, d_inner: int, dropout: float, pre_lnorm: bool = False):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_model, d_inner), nn.ReLU(inplace=True), nn.Dropout(dropout),
                                 nn.Linear(d_inner, d_model), nn.Dropout(dropout))
        self.layer_norm = nn.LayerNorm(d_model)
        self.pre_lnorm = pre_lnorm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pre_lnorm:
            return x + self.net(self.layer_norm(x))
        return self.layer_norm(x + self.net(x))


class DecoderLayer(nn.Module):
    def __init__(self, d_model: int, n_head: int, d_head: int, d_inner: int, dropout: float, dropatt: float,
                 pre_lnorm: bool):
        super().__init__()
        self.attn = RelMultiHeadAttn(d_model, n_head, d_head, dropout, dropatt, pre_lnorm)
        self.ff = PositionwiseFF(d_model, d_inner, dropout, pre_lnorm)

    def forward(self, h, r, r_w_bias, r_r_bias, mask, mems=None):
        return self.ff(self.attn(h, r, r_w_bias, r_r_bias, mask, mems))


def _cluster_dims(d_embed: int, div_val: int, n_clusters: int) -> list[int]:
    return [d_embed // (div_val ** i) for i in range(n_clusters)]


class AdaptiveEmbedding(nn.Module):
    """Adaptive input: the vocabulary is split at ``cutoffs``; cluster ``i`` gets ``d_embed / div_val^i`` dims,
    projected to ``d_model``. With ``div_val == 1`` it is one table (projected only if d_embed != d_model).
    Output is scaled by ``sqrt(d_model)`` as in Transformer-XL."""

    def __init__(self, n_token: int, d_embed: int, d_model: int, cutoffs: Sequence[int], div_val: int = 1):
        super().__init__()
        self.n_token, self.d_embed, self.d_model, self.div_val = n_token, d_embed, d_model, div_val
        self.cutoff_ends = [0, *cutoffs, n_token]
        self.emb_scale = d_model ** 0.5
        self.emb_layers = nn.ModuleList()
        self.emb_projs = nn.ParameterList()
        if div_val == 1:
            self.emb_layers.append(nn.Embedding(n_token, d_embed))
            if d_model != d_embed:
                self.emb_projs.append(nn.Parameter(torch.empty(d_model, d_embed)))
        else:
            dims = _cluster_dims(d_embed, div_val, len(self.cutoff_ends) - 1)
            for i, d_i in enumerate(dims):
                l, r = self.cutoff_ends[i], self.cutoff_ends[i + 1]
                self.emb_layers.append(nn.Embedding(r - l, d_i))
                self.emb_projs.append(nn.Parameter(torch.empty(d_model, d_i)))

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        if self.div_val == 1:
            emb = self.emb_layers[0](inp)
            if len(self.emb_projs):
                emb = F.linear(emb, self.emb_projs[0])
            return emb * self.emb_scale
        flat = inp.reshape(-1)
        out = torch.zeros(flat.numel(), self.d_model, dtype=self.emb_projs[0].dtype, device=flat.device)
        for i, layer in enumerate(self.emb_layers):
            l, r = self.cutoff_ends[i], self.cutoff_ends[i + 1]
            idx = ((flat >= l) & (flat < r)).nonzero().squeeze(1)
            emb_i = F.linear(layer(flat.index_select(0, idx) - l), self.emb_projs[i])
            out = out.index_copy(0, idx, emb_i.to(out.dtype))
        return out.view(*inp.shape, self.d_model) * self.emb_scale


class AdaptiveLogSoftmax(nn.Module):
    """Adaptive softmax returning per-token NLL; output weights can be tied to an :class:`AdaptiveEmbedding`.

    The head scores the ``cutoffs[0]`` most frequent words plus one logit per tail cluster; a word in tail
    cluster ``c`` has ``log p = log p_head(cluster c) + log p_c(word)``. No cutoffs = a full softmax. Every
    cluster is evaluated on every call (on an empty index set if no target falls in it), so all parameters
    always take part in the graph and DDP never sees an unused parameter.
    """

    def __init__(self, n_token: int, d_embed: int, d_model: int, cutoffs: Sequence[int], div_val: int = 1,
                 tie_to: AdaptiveEmbedding | None = None, tie_projs: bool = True):
        super().__init__()
        self.n_token, self.d_embed, self.d_model, self.div_val = n_token, d_embed, d_model, div_val
        self.cutoffs = list(cutoffs)
        self.cutoff_ends = [0, *self.cutoffs, n_token]
        self.shortlist = self.cutoff_ends[1]
        self.n_clusters = len(self.cutoffs)
        if self.n_clusters:
            self.cluster_weight = nn.Parameter(torch.empty(self.n_clusters, d_embed))
            self.cluster_bias = nn.Parameter(torch.zeros(self.n_clusters))
        n_tables = 1 if div_val == 1 else self.n_clusters + 1
        dims = [d_embed] if div_val == 1 else _cluster_dims(d_embed, div_val, n_tables)
        self.tied = tie_to is not None
        self.out_weights = nn.ParameterList()
        self.out_projs = nn.ParameterList()
        self.out_biases = nn.ParameterList()
        for i in range(n_tables):
            rows = n_token if div_val == 1 else self.cutoff_ends[i + 1] - self.cutoff_ends[i]
            self.out_biases.append(nn.Parameter(torch.zeros(rows)))
            if tie_to is None:
                self.out_weights.append(nn.Parameter(torch.empty(rows, dims[i])))
            needs_proj = div_val != 1 or d_model != d_embed
            if needs_proj and not (tie_to is not None and tie_projs):
                self.out_projs.append(nn.Parameter(torch.empty(d_model, dims[i])))
        # a plain attribute (not a submodule) so the shared tables are registered once, in the embedding
        self.__dict__["_tie_to"] = tie_to
        self.tie_projs = tie_projs

    def _table(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Weight, bias and input projection of cluster ``i`` (0 = head words)."""
        l, r = self.cutoff_ends[i], self.cutoff_ends[i + 1]
        t = 0 if self.div_val == 1 else i
        if self.tied:
            weight = self._tie_to.emb_layers[t].weight
            projs = self._tie_to.emb_projs if self.tie_projs else self.out_projs
        else:
            weight, projs = self.out_weights[t], self.out_projs
        bias = self.out_biases[t]
        if self.div_val == 1:
            weight, bias = weight[l:r], bias[l:r]
        proj = projs[t] if len(projs) else None
        return weight, bias, proj

    @staticmethod
    def _logits(hidden: torch.Tensor, weight, bias, proj) -> torch.Tensor:
        if proj is not None:
            hidden = F.linear(hidden, proj.t())
        return F.linear(hidden, weight, bias)

    def _head_logprob(self, hidden: torch.Tensor) -> torch.Tensor:
        weight, bias, proj = self._table(0)
        if self.n_clusters:
            weight = torch.cat([weight, self.cluster_weight], 0)
            bias = torch.cat([bias, self.cluster_bias], 0)
        return F.log_softmax(self._logits(hidden, weight, bias, proj).float(), dim=-1)

    def forward(self, hidden: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """NLL (float32) of ``target`` (N,) given ``hidden`` (N, d_model)."""
        head = self._head_logprob(hidden)
        if not self.n_clusters:
            return -head.gather(1, target[:, None]).squeeze(1)
        nll = torch.zeros(target.shape, dtype=head.dtype, device=head.device)
        for i in range(self.n_clusters + 1):
            l, r = self.cutoff_ends[i], self.cutoff_ends[i + 1]
            idx = ((target >= l) & (target < r)).nonzero().squeeze(1)
            tgt = target.index_select(0, idx) - l
            head_i = head.index_select(0, idx)
            if i == 0:
                lp = head_i.gather(1, tgt[:, None]).squeeze(1)
            else:
                tail = F.log_softmax(self._logits(hidden.index_select(0, idx), *self._table(i)).float(), -1)
                lp = head_i[:, self.shortlist + i - 1] + tail.gather(1, tgt[:, None]).squeeze(1)
            nll = nll.index_copy(0, idx, -lp)
        return nll

    def log_prob(self, hidden: torch.Tensor) -> torch.Tensor:
        """Full ``(N, n_token)`` log-distribution (for tests and small vocabularies)."""
        head = self._head_logprob(hidden)
        if not self.n_clusters:
            return head
        parts = [head[:, :self.shortlist]]
        for i in range(1, self.n_clusters + 1):
            tail = F.log_softmax(self._logits(hidden, *self._table(i)).float(), -1)
            parts.append(head[:, self.shortlist + i - 1:self.shortlist + i] + tail)
        return torch.cat(parts, dim=1)


class TransformerXL(nn.Module):
    """Transformer-XL LM. ``forward(inp, target, mems) -> (nll (B, T) float32, new_mems)``.

    ``mems`` is a list of ``n_layer`` tensors ``(B, mlen, d_model)`` (the inputs of each layer for the previous
    ``mlen`` positions) or None; the returned memories are detached and at most ``mem_len`` long.
    """

    def __init__(self, n_token: int, n_layer: int = 16, d_model: int = 410, n_head: int = 10, d_head: int = 41,
                 d_inner: int = 2100, dropout: float = 0.1, dropatt: float = 0.0, d_embed: int | None = None,
                 cutoffs: Sequence[int] = (20000, 40000, 200000), div_val: int = 1, tie_weight: bool = True,
                 tie_projs: bool = True, pre_lnorm: bool = False, mem_len: int = 150, clamp_len: int = -1,
                 same_length: bool = False, untie_r: bool = False, weight_norm: bool = False,
                 init_std: float = 0.02, proj_init_std: float = 0.01):
        super().__init__()
        cutoffs = list(cutoffs)
        if any(b <= a for a, b in zip([0, *cutoffs], [*cutoffs, n_token])):
            raise ValueError(f"cutoffs {cutoffs} must be strictly increasing, > 0 and < n_token={n_token}")
        d_embed = d_model if d_embed is None else d_embed
        self.n_token, self.n_layer, self.d_model = n_token, n_layer, d_model
        self.n_head, self.d_head = n_head, d_head
        self.mem_len, self.clamp_len, self.same_length = mem_len, clamp_len, same_length
        self.untie_r = untie_r
        self.word_emb = AdaptiveEmbedding(n_token, d_embed, d_model, cutoffs, div_val)
        self.pos_emb = PositionalEmbedding(d_model)
        self.drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(DecoderLayer(d_model, n_head, d_head, d_inner, dropout, dropatt, pre_lnorm)
                                    for _ in range(n_layer))
        n_bias = n_layer if untie_r else 1
        self.r_w_bias = nn.Parameter(torch.empty(n_bias, n_head, d_head))
        self.r_r_bias = nn.Parameter(torch.empty(n_bias, n_head, d_head))
        self.crit = AdaptiveLogSoftmax(n_token, d_embed, d_model, cutoffs, div_val,
                                       tie_to=self.word_emb if tie_weight else None, tie_projs=tie_projs)
        self.reset_parameters(init_std, proj_init_std)
        self.weight_norm = weight_norm
        if weight_norm:
            apply_weight_norm(self.layers)

    @torch.no_grad()
    def reset_parameters(self, init_std: float = 0.02, proj_init_std: float = 0.01) -> None:
        """Transformer-XL's ``init=normal``: N(0, init_std) weights, N(0, proj_init_std) projections, zero biases,
        LayerNorm gains N(1, init_std)."""
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, 0.0, init_std)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.normal_(m.weight, 1.0, init_std)
                nn.init.zeros_(m.bias)
        for p in [*self.word_emb.emb_projs, *self.crit.out_projs]:
            nn.init.normal_(p, 0.0, proj_init_std)
        for p in self.crit.out_weights:
            nn.init.normal_(p, 0.0, init_std)
        if self.crit.n_clusters:
            nn.init.normal_(self.crit.cluster_weight, 0.0, init_std)
        nn.init.normal_(self.r_w_bias, 0.0, init_std)
        nn.init.normal_(self.r_r_bias, 0.0, init_std)

    def _update_mems(self, hids: list[torch.Tensor], mems: list[torch.Tensor] | None,
                     mem_len: int) -> list[torch.Tensor] | None:
        if mem_len <= 0:
            return None
        with torch.no_grad():
            if mems is None:
                return [h[:, -mem_len:].detach() for h in hids]
            return [torch.cat([m, h], dim=1)[:, -mem_len:].detach() for m, h in zip(mems, hids)]

    def hidden_states(self, inp: torch.Tensor, mems: list[torch.Tensor] | None = None,
                      mem_len: int | None = None, clamp_len: int | None = None,
                      same_length: bool | None = None) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """Final hidden states ``(B, T, d_model)`` and the new memories."""
        mem_len = self.mem_len if mem_len is None else mem_len
        clamp_len = self.clamp_len if clamp_len is None else clamp_len
        same_length = self.same_length if same_length is None else same_length
        if mems is not None and len(mems) != self.n_layer:
            raise ValueError(f"expected {self.n_layer} memory tensors, got {len(mems)}")
        qlen = inp.size(1)
        mlen = mems[0].size(1) if mems is not None else 0
        klen = mlen + qlen
        word_emb = self.word_emb(inp)
        pos_seq = torch.arange(klen - 1, -1, -1, device=inp.device, dtype=torch.float32)
        if clamp_len > 0:
            pos_seq = pos_seq.clamp(max=clamp_len)
        pos_emb = self.drop(self.pos_emb(pos_seq))
        mask = attention_mask(qlen, mlen, inp.device, same_length, window=mem_len)
        core = self.drop(word_emb)
        hids = []
        for i, layer in enumerate(self.layers):
            hids.append(core)
            b = i if self.untie_r else 0
            core = layer(core, pos_emb, self.r_w_bias[b], self.r_r_bias[b], mask,
                         None if mems is None else mems[i])
        return self.drop(core), self._update_mems(hids, mems, mem_len)

    def forward(self, inp: torch.Tensor, target: torch.Tensor, mems: list[torch.Tensor] | None = None,
                mem_len: int | None = None, clamp_len: int | None = None,
                same_length: bool | None = None) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        core, new_mems = self.hidden_states(inp, mems, mem_len, clamp_len, same_length)
        nll = self.crit(core.reshape(-1, core.size(-1)), target.reshape(-1))
        return nll.view(target.shape), new_mems


def apply_weight_norm(module: nn.Module) -> list[str]:
    """Weight-normalise (``dim=0``: one gain per output unit) every ``nn.Linear`` inside ``module``.

    Returns the qualified names of the re-parametrised layers. Their ``parametrizations.weight.original1``
    (the direction) is scale-invariant per output row; ``original0`` is the gain.
    """
    names = []
    for name, m in module.named_modules():
        if isinstance(m, nn.Linear) and not hasattr(m, "parametrizations"):
            _weight_norm(m, name="weight", dim=0)
            names.append(name)
    return names


__all__ = ["rel_shift", "attention_mask", "PositionalEmbedding", "RelMultiHeadAttn", "PositionwiseFF",
           "DecoderLayer", "AdaptiveEmbedding", "AdaptiveLogSoftmax", "TransformerXL", "apply_weight_norm"]
