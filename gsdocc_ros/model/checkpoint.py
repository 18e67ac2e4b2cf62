"""Read official GSD-OCC checkpoints safely and strictly; save and load the project's own format.

Official files come in two layouts: mmcv's ``{meta, state_dict, optimizer}`` and the EMA hook's
``{iter|epoch, state_dict, updates}``; plain state dicts are accepted too, and ``module.``/``teacher.``
prefixes are stripped. Files are unpickled with ``weights_only=True`` unless the caller trusts them.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gsdocc_ros.model.checkpoint_file import (CHECKPOINT_FIX, PICKLE_OPCODES, CheckpointError,
                                              check_checkpoint_file)
from gsdocc_ros.model.config import ModelConfig
from gsdocc_ros.model.gsdocc import GSDOCC

FORMAT_TAG = "gsdocc_ros.checkpoint/1"
"""Value of the ``format`` entry that marks the project's own checkpoint format."""
STRIPPED_PREFIXES = ("module.", "teacher.")
"""Key prefixes removed before matching, as the official test script does."""
TRAINING_FORM = "training"
DEPLOY_FORM = "deploy"
_DEPLOY_MARKER = "dwconv.lk_origin.bias"  # the large-kernel conv has a bias only once merged
_TRUST_HINT = "pass trust_pickle=True (CLI: --trust-pickle) only if you trust where the file came from"


def _numpy_safe_globals() -> list[Any]:
    """Numpy types that mmcv's ``meta`` may hold (seeds, scores, small arrays), under numpy 1.x and 2.x names."""
    multiarray = np.core.multiarray
    safe: list[Any] = [np.dtype, np.ndarray]
    safe += [getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith("DType")]
    for func in (multiarray.scalar, multiarray._reconstruct):
        safe += [(func, f"{package}.multiarray.{func.__name__}") for package in ("numpy.core", "numpy._core")]
    return safe


@dataclass
class Checkpoint:
    """A checkpoint's state dict after unwrapping, plus what was found on the way."""

    path: Path
    state_dict: dict[str, Tensor]
    layout: str
    """"mmcv" ({meta, state_dict, optimizer}), "ema" ({iter|epoch, state_dict, updates}), "plain" or "gsdocc_ros"."""
    prefix_stripped: str | None = None
    """Prefix(es) removed from the keys, e.g. "module."; None when the keys were bare."""
    config: ModelConfig | None = None
    """The model config stored in the file (own format only)."""

    @property
    def form(self) -> str:
        """"deploy" when the head's large-kernel block is already merged, else "training"."""
        return DEPLOY_FORM if any(k.endswith(_DEPLOY_MARKER) for k in self.state_dict) else TRAINING_FORM

    @property
    def num_values(self) -> int:
        """Number of scalars in the state dict (parameters and buffers)."""
        return sum(v.numel() for v in self.state_dict.values())

    @property
    def model_config(self) -> ModelConfig:
        """The config the weights are for: the stored one, else the official default (256x704)."""
        return self.config or ModelConfig()


@dataclass
class CheckpointReport:
    """What a checkpoint holds and how its keys and shapes compare with the model's."""

    path: Path
    layout: str
    prefix_stripped: str | None
    form: str
    num_keys: int
    num_values: int
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    """(key, shape the model expects, shape in the file)."""

    @property
    def ok(self) -> bool:
        """True when the file matches the model key for key and shape for shape."""
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self, limit: int = 20) -> str:
        """A readable multi-line summary; each problem list shows at most ``limit`` names."""
        lines = [
            f"checkpoint: {self.path}",
            f"layout: {self.layout}",
            f"prefix stripped: {self.prefix_stripped or 'none'}",
            f"form: {self.form}",
            f"keys: {self.num_keys}, values: {self.num_values:,}",
        ]
        problems: list[tuple[str, list[str]]] = [
            ("missing from the file", self.missing),
            ("unexpected in the file", self.unexpected),
            ("wrong shape", [f"{k}: model {list(want)}, file {list(got)}" for k, want, got in self.mismatched]),
        ]
        for title, items in problems:
            if items:
                lines.append(f"{title} ({len(items)}):")
                lines += [f"  {item}" for item in items[:limit]]
                if len(items) > limit:
                    lines.append(f"  ... and {len(items) - limit} more")
        lines.append("result: matches the model key for key" if self.ok else "result: does NOT match the model")
        return "\n".join(lines)


def _one_line(error: BaseException) -> str:
    """The first sentence of an exception's text, on one line (torch's own texts run to paragraphs)."""
    text = " ".join(str(error).split())
    return text.split(". ")[0] or type(error).__name__


def _torch_load(path: Path, trust_pickle: bool) -> Any:
    """torch.load on CPU; weights_only with the numpy allow-list unless ``trust_pickle``.

    The file's kind is checked first (check_checkpoint_file); the trust hint is given only for an intact pickle that
    the safe loader refuses, never for damaged or foreign bytes.
    """
    check_checkpoint_file(path)
    try:
        if trust_pickle:
            return torch.load(path, map_location="cpu", weights_only=False)
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except EOFError as exc:
        raise CheckpointError(f"checkpoint {path}: its pickle data ends early (truncated at "
                              f"{path.stat().st_size:,} bytes); {CHECKPOINT_FIX}") from exc
    except pickle.UnpicklingError as exc:
        text = str(exc)
        operand = re.search(r"Unsupported operand (\d+)", text)
        if "truncated" in text or trust_pickle or (operand and int(operand.group(1)) not in PICKLE_OPCODES):
            raise CheckpointError(f"checkpoint {path}: not a torch checkpoint, its pickle data is damaged "
                                  f"({operand.group(0) if operand else _one_line(exc)}); "
                                  f"{CHECKPOINT_FIX}") from exc
        found = re.search(r"GLOBAL (\S+)", text)
        if found:
            raise CheckpointError(f"checkpoint {path}: refused to unpickle {found.group(1)}, which could run "
                                  f"arbitrary code on load; {_TRUST_HINT}") from exc
        detail = re.search(r"WeightsUnpickler error:\s*(.*?)\s*(?:Check the documentation|$)", text, re.S)
        raise CheckpointError(f"checkpoint {path}: the safe loader (weights_only=True) refuses its pickle "
                              f"({' '.join((detail.group(1) if detail else text).split())}); {_TRUST_HINT}") from exc
    except (RuntimeError, OSError, ValueError, KeyError, ImportError, AttributeError) as exc:
        raise CheckpointError(f"checkpoint {path}: not a readable torch checkpoint ({_one_line(exc)}); "
                              f"{CHECKPOINT_FIX}") from exc


def _strip_prefixes(state_dict: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Remove leading ``module.``/``teacher.`` from every key; also returns which prefixes were seen."""
    stripped: dict[str, Any] = {}
    seen: list[str] = []
    for key, value in state_dict.items():
        name = key
        while name.startswith(STRIPPED_PREFIXES):
            prefix = next(p for p in STRIPPED_PREFIXES if name.startswith(p))
            if prefix not in seen:
                seen.append(prefix)
            name = name[len(prefix):]
        if name in stripped:
            raise CheckpointError(f"key {key!r} collides with another key once prefixes are stripped")
        stripped[name] = value
    return stripped, (", ".join(seen) or None)


def read_checkpoint(path: str | Path, trust_pickle: bool = False) -> Checkpoint:
    """Read an official or own-format checkpoint and unwrap its state dict (no comparison with a model)."""
    path = Path(path)
    obj = _torch_load(path, trust_pickle)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint {path}: holds a {type(obj).__name__}, expected a dict")
    config = None
    if obj.get("format") == FORMAT_TAG:
        layout = "gsdocc_ros"
        config = config_from_dict(obj.get("config", {}))
        raw = obj.get("state_dict")
    elif "state_dict" in obj:
        layout = "ema" if "updates" in obj else "mmcv"
        raw = obj["state_dict"]
    else:
        layout, raw = "plain", obj
    if not isinstance(raw, Mapping):
        raise CheckpointError(f"checkpoint {path}: 'state_dict' is a {type(raw).__name__}, expected a dict")
    not_tensors = [k for k, v in raw.items() if not isinstance(v, Tensor)]
    if not_tensors:
        raise CheckpointError(f"checkpoint {path}: entries that are not tensors ({layout} layout): "
                              f"{', '.join(map(str, not_tensors[:10]))}")
    state_dict, prefix = _strip_prefixes(raw)
    return Checkpoint(path, state_dict, layout, prefix, config)


def expected_shapes(cfg: ModelConfig, form: str = TRAINING_FORM) -> dict[str, tuple[int, ...]]:
    """Key -> shape of GSDOCC(cfg)'s state dict in the given form, built on the meta device (no memory)."""
    with torch.device("meta"):
        model = GSDOCC(cfg)
        if form == DEPLOY_FORM:
            model.reparameterize()
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def compare(checkpoint: Checkpoint, expected: Mapping[str, tuple[int, ...]]) -> CheckpointReport:
    """Strict key and shape comparison of a checkpoint against the model's expected shapes."""
    found = checkpoint.state_dict
    mismatched = [(k, tuple(shape), tuple(found[k].shape))
                  for k, shape in expected.items() if k in found and tuple(found[k].shape) != tuple(shape)]
    return CheckpointReport(
        path=checkpoint.path, layout=checkpoint.layout, prefix_stripped=checkpoint.prefix_stripped,
        form=checkpoint.form, num_keys=len(found), num_values=checkpoint.num_values,
        missing=[k for k in expected if k not in found], unexpected=[k for k in found if k not in expected],
        mismatched=mismatched)


def check_checkpoint(source: str | Path | Checkpoint, trust_pickle: bool = False) -> CheckpointReport:
    """Compare a checkpoint with the model it is meant for (its stored config, else the official one)."""
    checkpoint = source if isinstance(source, Checkpoint) else read_checkpoint(source, trust_pickle)
    return compare(checkpoint, expected_shapes(checkpoint.model_config, checkpoint.form))


def _model_form(model: GSDOCC) -> str:
    """"deploy" once ``model.reparameterize()`` has run, else "training"."""
    return DEPLOY_FORM if any(k.endswith(_DEPLOY_MARKER) for k in model.state_dict()) else TRAINING_FORM


def load_checkpoint(model: GSDOCC, source: str | Path | Checkpoint, trust_pickle: bool = False) -> CheckpointReport:
    """Load weights strictly into ``model``; raises CheckpointError listing every missing/unexpected/mis-shaped key.

    A deploy-form file first merges the model's large-kernel block, so both forms load.
    """
    checkpoint = source if isinstance(source, Checkpoint) else read_checkpoint(source, trust_pickle)
    if checkpoint.form != _model_form(model):
        if checkpoint.form == TRAINING_FORM:
            raise CheckpointError(f"checkpoint {checkpoint.path}: training-form weights cannot load into a model "
                                  "that is already reparameterized; load first, then call reparameterize()")
        model.reparameterize()
    report = compare(checkpoint, {k: tuple(v.shape) for k, v in model.state_dict().items()})
    if not report.ok:
        raise CheckpointError(report.describe())
    model.load_state_dict(checkpoint.state_dict, strict=True)
    return report


def config_to_dict(cfg: ModelConfig) -> dict[str, Any]:
    """The config as plain nested dicts/tuples/numbers (loadable with weights_only=True)."""
    return dataclasses.asdict(cfg)


def _as_tuples(value: Any) -> Any:
    """Lists (e.g. from JSON) back to the tuples the frozen configs use."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def config_from_dict(data: Mapping[str, Any], cls: type = ModelConfig) -> Any:
    """Rebuild a (nested) config dataclass from ``config_to_dict`` output; absent fields keep their defaults."""
    if not isinstance(data, Mapping):
        raise CheckpointError(f"model config for {cls.__name__} is a {type(data).__name__}, expected a dict")
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise CheckpointError(f"model config: unknown field(s) for {cls.__name__}: {', '.join(unknown)}")
    kwargs = {name: config_from_dict(value, hints[name]) if dataclasses.is_dataclass(hints[name])
              else _as_tuples(value) for name, value in data.items()}
    return cls(**kwargs)


def save_checkpoint(path: str | Path, state_dict: Mapping[str, Tensor], cfg: ModelConfig) -> None:
    """Write the own format ({format, config, state_dict}) to a temporary name, then rename into place."""
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    payload = {"format": FORMAT_TAG, "config": config_to_dict(cfg), "state_dict": tensors}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def build_model(path: str | Path, trust_pickle: bool = False, reparameterize: bool = True,
                cfg: ModelConfig | None = None) -> GSDOCC:
    """A GSDOCC in eval mode with weights from ``path`` (strict), merged for inference unless told otherwise.

    ``cfg`` overrides the config stored in an own-format file; official files use the default config.
    """
    checkpoint = read_checkpoint(path, trust_pickle)
    model = GSDOCC(cfg or checkpoint.model_config)
    load_checkpoint(model, checkpoint)
    if reparameterize and checkpoint.form == TRAINING_FORM:
        model.reparameterize()
    return model.eval()
