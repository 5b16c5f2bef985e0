"""The shipped YAML configs (``configs/*.yaml``) and ``--config NAME`` resolution.

The repository's top-level ``configs/`` folder is installed as the package data ``posetr/configs/``
(``setup.py``: ``package_dir={"posetr.configs": "configs"}``), so ``--config petr_overfit_coco_sample``
works after a plain ``pip install .`` as well as in a source checkout or an editable install.
"""
from __future__ import annotations

import os

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# installed wheel: posetr/configs; source checkout / editable install: configs/ beside the package
_CANDIDATE_DIRS = (os.path.join(_PACKAGE_DIR, "configs"), os.path.join(os.path.dirname(_PACKAGE_DIR), "configs"))

DEMO_CONFIG = "petr_demo_synthetic"  # what `python -m posetr train` runs without --config
DEMO_MESSAGE = ("posetr train without --config: the demo ({name}.yaml). A small PETR learns 4 generated "
                "stick-figure images and is evaluated on them with COCOeval; about 2 minutes on 2 CPU cores (AP about 0.97). "
                "Real runs: --config NAME or PATH (python -m posetr train --help; README: Models and configs).")


def configs_dir() -> str:
    """The folder holding the shipped ``*.yaml`` configs.

    Raises:
        FileNotFoundError: neither the installed ``posetr/configs/`` nor a source tree's ``configs/`` exists.
    """
    for folder in _CANDIDATE_DIRS:
        if os.path.isdir(folder):
            return folder
    raise FileNotFoundError(f"posetr's configs are not installed (looked in {', '.join(_CANDIDATE_DIRS)})")


def available_configs() -> list[str]:
    """Names (file names without ``.yaml``) of the shipped configs, sorted."""
    return sorted(f[:-len(".yaml")] for f in os.listdir(configs_dir()) if f.endswith(".yaml"))


def resolve_config(name_or_path: str) -> str:
    """The YAML file ``--config`` means: an existing path as given, otherwise the shipped config of that
    name (``petr_overfit_coco_sample``, with or without ``.yaml``; also ``configs/<name>.yaml`` as the
    README writes it, from any working directory).

    Raises:
        FileNotFoundError: neither a file nor a shipped config; the message lists the shipped names.
    """
    if os.path.isfile(name_or_path):
        return name_or_path
    name = os.path.basename(name_or_path)
    name = name[:-len(".yaml")] if name.endswith(".yaml") else name
    if os.path.dirname(name_or_path) in ("", "configs"):
        try:
            candidate = os.path.join(configs_dir(), name + ".yaml")
        except FileNotFoundError:
            candidate = None
        if candidate is not None and os.path.isfile(candidate):
            return candidate
    try:
        known = ", ".join(available_configs())
    except FileNotFoundError as exc:
        known = str(exc)
    raise FileNotFoundError(f"config file {name_or_path!r} is neither a file nor a shipped config "
                            f"(shipped: {known})")
