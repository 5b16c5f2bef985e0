"""Official Poseur checkpoints (aim-uofa/Poseur, mmpose 0.x: ``poseur_res50_coco_256x192-*.pth`` and the
others of its README) in posetr's layout, so the released models evaluate and predict with posetr.

The official model is ``backbone`` + ``neck`` (``ChannelMapper``) + ``keypoint_head`` (``Poseur_noise_sample``
with its ``PoseurTransformer``, per-layer branches and the two flows). The key mapping
(:func:`convert_state_dict`), for decoder layer l:

- ``transformer.level_embeds`` -> ``level_embed.weight``
- ``transformer.fc_coord.linear.*``, ``transformer.fc_sigma.linear.*`` -> ``fc_coord.linear.*``, ``fc_sigma.linear.*``
- ``transformer.pos_trans.*``, ``pos_trans_norm.*``, ``pos_embed.*`` -> ``query_proj.*``, ``query_norm.*``,
  ``query_pos.*``
- ``transformer.decoder.layers.l.attentions.0.attn.*`` -> ``decoder.layers.l.self_attn.*``
- ``...attentions.1.{sampling_offsets,attention_weights,output_proj}.*`` -> ``decoder.layers.l.cross_attn.*``
- ``...attentions.1.value_proj_weight.weight`` ((M C, C/M) table) and ``value_proj_bias.weight`` ((M, C/M))
  -> ``cross_attn.value_proj.weight`` (C, C) and ``.bias`` (C)
- ``...ffns.0.layers.0.0.*``, ``...ffns.0.layers.1.*`` -> ``decoder.layers.l.ffn.linear1.*``, ``linear2.*``
- ``...norms.0``, ``norms.1``, ``norms.2`` -> ``norm1``, ``norm2``, ``ffn.norm``
- ``fc_coord_branches.l.*``, ``fc_coord_output_branches.l.*`` -> ``decoder.coord_branches.l.*``,
  ``decoder.coord_output_branches.l.*``
- ``fc_sigma_branches.l.{0,1}.*``, ``fc_sigma_branches.l.2.linear.*`` -> ``decoder.sigma_branches.l.{0,1,2}.*``
- ``enc_flow.*``, ``dec_flow.*`` -> the criterion's ``enc_flow.*``, ``dec_flow.*``

``backbone.*`` and ``neck.*`` keep their names. The official value projection of head m is
``value_proj_weight.weight.reshape(M, C, C/M)[m]`` (``einsum('bqhc,hco->bqho')``); posetr's ``nn.Linear``
stores head m in output rows ``m C/M:(m+1) C/M`` (``weight.view(M, C/M, C).transpose(1, 2)``), so the table is
reshaped and transposed; the results agree to rounding (``tests/test_models_poseur.py``).

Convert once, then use the file like any posetr checkpoint::

    python -m posetr.models.poseur.official poseur_res50_coco_256x192.pth OUT.pth \\
        --config configs/poseur_r50_coco_256x192.yaml
    python -m posetr eval --config configs/poseur_r50_coco_256x192.yaml --checkpoint OUT.pth --data-root /data/coco
"""
from __future__ import annotations

import argparse
import dataclasses
import re
import sys

import torch

from posetr.errors import CheckpointError

_HEAD = "keypoint_head."
_LAYER = re.compile(r"transformer\.decoder\.layers\.(\d+)\.(.+)")
_LAYER_PARTS = [
    (re.compile(r"attentions\.0\.attn\.(.+)"), r"self_attn.\1"),
    (re.compile(r"attentions\.1\.((?:sampling_offsets|attention_weights|output_proj)\..+)"), r"cross_attn.\1"),
    (re.compile(r"ffns\.0\.layers\.0\.0\.(.+)"), r"ffn.linear1.\1"),
    (re.compile(r"ffns\.0\.layers\.1\.(.+)"), r"ffn.linear2.\1"),
    (re.compile(r"norms\.0\.(.+)"), r"norm1.\1"),
    (re.compile(r"norms\.1\.(.+)"), r"norm2.\1"),
    (re.compile(r"norms\.2\.(.+)"), r"ffn.norm.\1"),
]
_HEAD_PARTS = [
    (re.compile(r"transformer\.level_embeds$"), "level_embed.weight"),
    (re.compile(r"transformer\.(fc_coord|fc_sigma)\.linear\.(.+)"), r"\1.linear.\2"),
    (re.compile(r"transformer\.pos_trans\.(.+)"), r"query_proj.\1"),
    (re.compile(r"transformer\.pos_trans_norm\.(.+)"), r"query_norm.\1"),
    (re.compile(r"transformer\.pos_embed\.(.+)"), r"query_pos.\1"),
    (re.compile(r"fc_coord_branches\.(.+)"), r"decoder.coord_branches.\1"),
    (re.compile(r"fc_coord_output_branches\.(.+)"), r"decoder.coord_output_branches.\1"),
    (re.compile(r"fc_sigma_branches\.(\d+)\.(\d+)\.linear\.(.+)"), r"decoder.sigma_branches.\1.\2.\3"),
    (re.compile(r"fc_sigma_branches\.(.+)"), r"decoder.sigma_branches.\1"),
]


def _value_projection(layer_keys: dict, prefix: str, num_heads: int) -> dict:
    weight = layer_keys.pop(f"{prefix}attentions.1.value_proj_weight.weight", None)
    bias = layer_keys.pop(f"{prefix}attentions.1.value_proj_bias.weight", None)
    if weight is None or bias is None:
        return {}
    channels = weight.shape[0] // num_heads
    head_weight = weight.reshape(num_heads, channels, -1)  # [M, C, C/M]: official einsum 'bqhc,hco'
    return {"cross_attn.value_proj.weight": head_weight.transpose(1, 2).reshape(-1, channels).contiguous(),
            "cross_attn.value_proj.bias": bias.reshape(-1).clone()}


def convert_state_dict(state: dict, *, num_heads: int = 8) -> tuple[dict, dict]:
    """(model state, criterion state) in posetr's layout of an official Poseur state dict.

    Args:
        state: the official ``state_dict`` (keys ``backbone.*``, ``neck.*``, ``keypoint_head.*``; a leading
            ``module.`` is dropped). num_heads: M, EMSDA's heads (8 in every official config).

    Raises:
        CheckpointError: a key the mapping does not know (named), or no ``keypoint_head.`` keys at all.
    """
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if not any(k.startswith(_HEAD) for k in state):
        raise CheckpointError("not an official Poseur checkpoint: no 'keypoint_head.' keys")
    model, criterion, unknown = {}, {}, []
    layers: dict[str, dict] = {}
    for key, value in state.items():
        if key.startswith(("backbone.", "neck.")):
            model[key] = value
            continue
        if not key.startswith(_HEAD):
            unknown.append(key)
            continue
        key = key[len(_HEAD):]
        if key.startswith(("enc_flow.", "dec_flow.")):
            criterion[key] = value
            continue
        match = _LAYER.match(key)
        if match:
            layers.setdefault(match.group(1), {})[match.group(2)] = value
            continue
        for pattern, target in _HEAD_PARTS:
            if pattern.match(key):
                model[pattern.sub(target, key)] = value
                break
        else:
            unknown.append(_HEAD + key)
    for index, layer_keys in layers.items():
        converted = _value_projection(layer_keys, "", num_heads)
        for key, value in layer_keys.items():
            for pattern, target in _LAYER_PARTS:
                if pattern.match(key):
                    converted[pattern.sub(target, key)] = value
                    break
            else:
                unknown.append(f"{_HEAD}transformer.decoder.layers.{index}.{key}")
        model.update({f"decoder.layers.{index}.{k}": v for k, v in converted.items()})
    if unknown:
        raise CheckpointError(f"official Poseur checkpoint: {len(unknown)} keys posetr does not map, e.g. "
                              f"{unknown[:5]}")
    return model, criterion


def read_official_checkpoint(path: str) -> dict:
    """The ``state_dict`` of an official (mmcv) checkpoint file, read with ``torch.load(weights_only=True)``.

    Raises:
        FileNotFoundError: no such file. CheckpointError: unreadable without running code (mmcv's ``meta``
            can hold objects weights-only loading refuses: re-save ``{"state_dict": ckpt["state_dict"]}`` from
            a trusted environment), or no state dict inside.
    """
    import os

    if not os.path.isfile(path):
        raise FileNotFoundError(f"official Poseur checkpoint {path!r} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or holding objects that need code to load
        raise CheckpointError(f"official Poseur checkpoint {path!r} cannot be read weights-only: {exc}") from None
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"official Poseur checkpoint {path!r} holds no state dict of tensors")
    return state


def main(argv=None) -> int:
    from posetr.config import config_to_dict, load_config
    from posetr.engine.checkpoint import describe_mismatch, save_checkpoint
    from posetr.models import build_model

    parser = argparse.ArgumentParser(description="Convert an official Poseur checkpoint to a posetr checkpoint.")
    parser.add_argument("official", help="the official .pth (mmpose 0.x, aim-uofa/Poseur)")
    parser.add_argument("output", help="the posetr checkpoint to write")
    parser.add_argument("--config", required=True, help="the posetr config of the same model")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config)
        # random weights are replaced below: no ImageNet file is read
        model, criterion, _ = build_model(dataclasses.replace(cfg.model, backbone_init="scratch",
                                                              pretrained_backbone=None))
        model_state, criterion_state = convert_state_dict(read_official_checkpoint(args.official),
                                                          num_heads=cfg.model.n_heads)
        for what, module, converted in (("model", model, model_state), ("criterion", criterion, criterion_state)):
            own = {k: v for k, v in module.state_dict().items() if not k.endswith("num_batches_tracked")}
            mismatch = describe_mismatch(own, {k: v for k, v in converted.items()
                                               if not k.endswith("num_batches_tracked")})
            if mismatch is not None:
                raise CheckpointError(f"{args.official!r} does not fit the {what} of {args.config}: {mismatch}")
            module.load_state_dict(converted, strict=False)
        save_checkpoint(args.output, model=model, optimizer=None, scheduler=None, epoch=0, config=config_to_dict(cfg),
                        criterion=criterion)
    except (OSError, ValueError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
