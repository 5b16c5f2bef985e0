"""DETR's transformer (facebookresearch/detr ``models/transformer.py``, unchanged in amathislab/poet).

Post-norm encoder and decoder layers of ``nn.MultiheadAttention`` (sequence-first tensors) and a ReLU FFN;
the positional encoding is added to queries and keys of every encoder self-attention and to the keys of
every decoder cross-attention, the learned query embedding to queries and keys of the decoder
self-attention and to the queries of its cross-attention; the decoder starts from zeros; no final encoder
LayerNorm; one shared final decoder LayerNorm applied to the output of EVERY decoder layer
(``return_intermediate=True``); every parameter with more than one dimension Xavier-uniform initialised
(DETR's ``_reset_parameters``, which also covers the in-projections of the attentions as one matrix).
Parameter names are DETR's (``encoder.layers.i.self_attn``, ``decoder.layers.i.multihead_attn``,
``linear1``, ``norm1`` ...).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


def add_ffn(layer: nn.Module, *, d_model: int, dim_feedforward: int, dropout: float) -> None:
    """Registers DETR's FFN modules on ``layer`` (``linear1``, ``dropout``, ``linear2``, in DETR's order)."""
    layer.linear1 = nn.Linear(d_model, dim_feedforward)
    layer.dropout = nn.Dropout(dropout)
    layer.linear2 = nn.Linear(dim_feedforward, d_model)


def add_sublayer_norms(layer: nn.Module, *, count: int, d_model: int, dropout: float) -> None:
    """Registers ``norm1`` .. ``norm{count}`` (LayerNorm) then ``dropout1`` .. ``dropout{count}``: the
    post-norm residual of each sub-layer, DETR's names and order."""
    for i in range(1, count + 1):
        setattr(layer, f"norm{i}", nn.LayerNorm(d_model))
    for i in range(1, count + 1):
        setattr(layer, f"dropout{i}", nn.Dropout(dropout))


def ffn(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """linear2(dropout(relu(linear1(x)))) of a layer set up by :func:`add_ffn` (no residual, no norm)."""
    return layer.linear2(layer.dropout(F.relu(layer.linear1(x))))


class TransformerEncoderLayer(nn.Module):
    """Self-attention (pos added to queries and keys), then an FFN; each with a residual and a LayerNorm
    after it. Forward: src Float[S, B, C], padding_mask Bool[B, S], pos Float[S, B, C] -> Float[S, B, C]."""

    def __init__(self, *, d_model: int, n_heads: int, dim_feedforward: int, dropout: float):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout)
        add_ffn(self, d_model=d_model, dim_feedforward=dim_feedforward, dropout=dropout)
        add_sublayer_norms(self, count=2, d_model=d_model, dropout=dropout)

    def forward(self, src, padding_mask, pos):
        q = k = src + pos
        src = self.norm1(src + self.dropout1(self.self_attn(q, k, value=src, key_padding_mask=padding_mask)[0]))
        return self.norm2(src + self.dropout2(ffn(self, src)))


class TransformerDecoderLayer(nn.Module):
    """Self-attention among the queries, cross-attention to the encoder memory, FFN; post-norm.

    Forward: tgt Float[N, B, C], memory Float[S, B, C], padding_mask Bool[B, S] (memory padding),
    pos Float[S, B, C], query_pos Float[N, B, C] -> Float[N, B, C].
    """

    def __init__(self, *, d_model: int, n_heads: int, dim_feedforward: int, dropout: float):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout)
        self.multihead_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout)
        add_ffn(self, d_model=d_model, dim_feedforward=dim_feedforward, dropout=dropout)
        add_sublayer_norms(self, count=3, d_model=d_model, dropout=dropout)

    def forward(self, tgt, memory, padding_mask, pos, query_pos):
        q = k = tgt + query_pos
        tgt = self.norm1(tgt + self.dropout1(self.self_attn(q, k, value=tgt)[0]))
        attn = self.multihead_attn(query=tgt + query_pos, key=memory + pos, value=memory,
                                   key_padding_mask=padding_mask)[0]
        tgt = self.norm2(tgt + self.dropout2(attn))
        return self.norm3(tgt + self.dropout3(ffn(self, tgt)))


class TransformerEncoder(nn.Module):
    """``num_layers`` copies of an encoder layer, no final norm (post-norm DETR)."""

    def __init__(self, *, layer: TransformerEncoderLayer, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))

    def forward(self, src, padding_mask, pos):
        for layer in self.layers:
            src = layer(src, padding_mask, pos)
        return src


class TransformerDecoder(nn.Module):
    """``num_layers`` copies of a decoder layer; returns the shared final LayerNorm ``norm`` of every
    layer's output, stacked: Float[num_layers, N, B, C]."""

    def __init__(self, *, layer: TransformerDecoderLayer, num_layers: int, d_model: int):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, tgt, memory, padding_mask, pos, query_pos):
        intermediate = []
        for layer in self.layers:
            tgt = layer(tgt, memory, padding_mask, pos, query_pos)
            intermediate.append(self.norm(tgt))
        return torch.stack(intermediate)


class Transformer(nn.Module):
    """DETR's encoder-decoder.

    Args:
        d_model, n_heads, dim_feedforward, dropout: layer sizes (DETR/POET: 256, 8, 2048, 0.1).
        enc_layers, dec_layers: layer counts (6, 6); ``dec_layers`` >= 1.

    Forward: src Float[B, C, H, W] (projected features), mask Bool[B, H, W] (True = padding),
    query_embed Float[N, C], pos_embed Float[B, C, H, W] -> decoder outputs Float[dec_layers, B, N, C]
    (each after the final decoder LayerNorm).

    Raises:
        ValueError: ``d_model`` not divisible by ``n_heads``, or no decoder layer.
    """

    def __init__(self, *, d_model: int = 256, n_heads: int = 8, enc_layers: int = 6, dec_layers: int = 6,
                 dim_feedforward: int = 2048, dropout: float = 0.1):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        if dec_layers < 1:
            raise ValueError(f"dec_layers must be >= 1, got {dec_layers}")
        sizes = dict(d_model=d_model, n_heads=n_heads, dim_feedforward=dim_feedforward, dropout=dropout)
        self.encoder = TransformerEncoder(layer=TransformerEncoderLayer(**sizes), num_layers=enc_layers)
        self.decoder = TransformerDecoder(layer=TransformerDecoderLayer(**sizes), num_layers=dec_layers,
                                          d_model=d_model)
        self.d_model = d_model
        self._reset_parameters()

    def _reset_parameters(self):
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, src, mask, query_embed, pos_embed):
        B = src.shape[0]
        src = src.flatten(2).permute(2, 0, 1)  # [S, B, C]
        pos = pos_embed.flatten(2).permute(2, 0, 1)
        query_pos = query_embed.unsqueeze(1).repeat(1, B, 1)  # [N, B, C]
        mask = mask.flatten(1)
        memory = self.encoder(src, mask, pos)
        hs = self.decoder(torch.zeros_like(query_pos), memory, mask, pos, query_pos)
        return hs.transpose(1, 2)
