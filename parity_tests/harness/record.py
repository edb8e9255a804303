"""A failing case's record: a snapshot of the case that can be written, loaded and verified.

`<run>/failures/<case-id>.json` says what went wrong: every stage of every party (truth, torch, candidate), which
side is wrong, the tolerance and its evidence, the versions, the candidate and the command that replays it.
`<case-id>.npz` holds the exact inputs, as they were before any implementation saw them. The JSON keeps a SHA-256
checksum of each array and a digest that binds the case's identity to them: `load` refuses (BadRecord) a record
whose npz is missing, corrupt or another case's, and a record edited to name another case. A device-scale case
too large to store (over MAX_NPZ_BYTES) keeps its case and seed instead, and `load` rebuilds and checks the inputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shlex
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from parity_tests.harness import devices
from parity_tests.harness.candidate import Candidate
from parity_tests.harness.cases import Case, CaseData, build
from parity_tests.harness.check import CaseResult, StageResult
from parity_tests.harness.specs import SPECS

# 3: the inputs hold grad_grad_input (the second-order stages); a record of 2 cannot be judged at them
FORMAT = "loss-parity record 3"
MAX_NPZ_BYTES = 256 << 20
_CASE_FIELDS = ("loss", "options", "shape", "regime", "dtype", "device", "seed")


class BadRecord(Exception):
    """A record that cannot be replayed as the case it names; the message says what is wrong, in one line."""


def checksum(array: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and bytes."""
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def _digest(case_json: dict[str, Any], keywords: dict[str, Any], checksums: dict[str, str]) -> str:
    identity = json.dumps([case_json, keywords, checksums], sort_keys=True, default=_jsonable)
    return hashlib.sha256(identity.encode()).hexdigest()


def versions(device: str) -> dict[str, str]:
    return {
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "device_name": devices.name(device),
    }


def replay_command(record: Path, candidate: Candidate | None = None) -> str:
    """The replay, as it works when pasted: this interpreter, the record, and where the candidate is imported from
    (relative paths kept relative to the current folder)."""
    parts = [sys.executable, "-m", "parity_tests.repro", _shown(record)]
    if candidate is not None and not candidate.is_truth:
        parts += ["--impl", candidate.name]
        if candidate.path:
            parts += ["--impl-path", _shown(Path(candidate.path))]
    return shlex.join(parts)


def _shown(path: Path) -> str:
    try:
        return os.path.relpath(path) if Path(path).resolve().is_relative_to(Path.cwd()) else str(path)
    except ValueError:  # another drive (Windows)
        return str(path)


def cause(stage: StageResult) -> str:
    v = stage.verdict
    if v.problem:
        return v.problem.split(":")[0].split("\n")[0]
    if v.nan_mismatches:
        return "NaN pattern differs"
    if v.inf_mismatches:
        return "inf pattern differs"
    return "over tolerance"


def stage_json(s: StageResult) -> dict[str, Any]:
    return {
        "stage": s.stage,
        "status": s.status,
        "wrong": s.wrong,
        "torch_status": s.torch_status,
        "candidate_status": s.candidate_status,
        "torch": s.torch.to_json(),
        "candidate": s.candidate.to_json() if s.candidate else None,
        "against_torch": s.against_torch.to_json() if s.against_torch else None,
        "unsupported": s.unsupported,
        "torch_unavailable": s.torch_unavailable,
        "deviation": s.deviation.id if s.deviation else None,
        "deviation_explains": s.explained,
        "tolerance": {"eps": s.tolerance.eps, "source": s.tolerance.source, "k": s.factor},
    }


def write_record(result: CaseResult, folder: Path) -> Path:
    """The JSON record and the npz of inputs of a failing case; returns the JSON's path."""
    failures = result.failures
    first = failures[0] if failures else None
    fields: dict[str, Any] = {"outcome": "lost-evidence" if not failures else "mismatch"}
    if first is not None:
        v = first.verdict
        fields.update(
            stage=first.stage,
            wrong=first.wrong,
            cause=cause(first),
            error_eps=v.error,
            max_abs_error=v.max_abs_error,
            max_rel_error=v.max_rel_error,
            ulps=v.ulps,
            worst_index=v.worst_index,
            expected=v.expected,
            actual=v.actual,
            mismatches=v.mismatches,
            total=v.total,
            nan_mismatches=v.nan_mismatches,
            inf_mismatches=v.inf_mismatches,
            scale=v.scale,
            problem=v.problem,
            tolerance={
                "eps": v.tolerance,
                "source": first.tolerance.source,
                "evidence": first.tolerance.evidence,
            },
            deviation=first.deviation.id if first.deviation else None,
        )
    if result.lost_evidence:
        fields["lost_evidence"] = [d.id for d in result.lost_evidence]
    fields["stages"] = [stage_json(s) for s in result.stages]
    return _write(result.data, result.candidate, folder, fields)


def write_incident(data: CaseData, candidate: Candidate, folder: Path, outcome: str, message: str) -> Path:
    """The record of a case that never finished: `outcome` is "timeout" or "crash"."""
    return _write(data, candidate, folder, {"outcome": outcome, "problem": message, "stages": []})


def _write(data: CaseData, candidate: Candidate, folder: Path, fields: dict[str, Any]) -> Path:
    case = data.case
    folder.mkdir(parents=True, exist_ok=True)
    json_path, npz_path = folder / f"{case.id}.json", folder / f"{case.id}.npz"
    checksums = {name: checksum(a) for name, a in sorted(data.arrays.items())}
    # A device-scale case's inputs are GBs: the record names its case instead, whose seed rebuilds them exactly.
    stored = sum(a.nbytes for a in data.arrays.values()) <= MAX_NPZ_BYTES
    if stored:
        np.savez(npz_path, **data.arrays)
    record = {
        "format": FORMAT,
        "case_id": case.id,
        **case.to_json(),
        "keywords": data.keywords,
        **fields,
        "candidate": {"name": candidate.name, "kind": candidate.kind, "path": candidate.path},
        "impl": candidate.name,
        "versions": versions(case.device),
        "inputs_file": npz_path.name if stored else None,
        "checksums": checksums,
        "digest": _digest(case.to_json(), data.keywords, checksums),
        "repro": replay_command(json_path, candidate),
    }
    json_path.write_text(json.dumps(record, indent=2, default=_jsonable) + "\n")
    return json_path


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot store {type(value).__name__} in a record")


def load_record(path: Path) -> tuple[dict[str, Any], CaseData]:
    """A record and the exact inputs it was written with, verified; BadRecord says what is wrong."""
    try:
        record = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise BadRecord(f"{path}: no such record") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRecord(f"{path}: not a readable JSON record ({exc})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise BadRecord(
            f"{path}: not a loss-parity record of this version (format {found!r}, expected {FORMAT!r})"
        )
    missing = [
        k
        for k in ("case_id", *_CASE_FIELDS, "keywords", "checksums", "digest", "inputs_file")
        if k not in record
    ]
    if missing:
        raise BadRecord(f"{path}: the record lacks {', '.join(missing)}")
    if record["loss"] not in SPECS:
        raise BadRecord(f"{path}: unknown loss {record['loss']!r} (known: {', '.join(SPECS)})")
    try:
        case = Case.from_json(record)
        made = case.id
    except (KeyError, TypeError, ValueError) as exc:
        raise BadRecord(f"{path}: its case fields do not make a case ({exc})") from None
    if made != record["case_id"]:
        raise BadRecord(
            f"{path}: relabelled: its fields make the case {made}, its case_id says {record['case_id']}"
        )
    checksums = record["checksums"]
    if _digest(case.to_json(), record["keywords"], checksums) != record["digest"]:
        raise BadRecord(
            f"{path}: edited: its case, options or checksums no longer match the digest written with it"
        )
    if record["inputs_file"] is None:
        data = build(case)
        arrays = data.arrays
    else:
        npz = Path(path).parent / record["inputs_file"]
        try:
            with np.load(npz, allow_pickle=False) as stored:
                arrays = {k: stored[k] for k in stored.files}
        except FileNotFoundError:
            raise BadRecord(f"{path}: its inputs file {npz.name} is missing") from None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise BadRecord(f"{path}: its inputs file {npz.name} is corrupt ({exc})") from None
        data = CaseData(case, arrays, record["keywords"])
    if sorted(arrays) != sorted(checksums):
        raise BadRecord(f"{path}: its inputs hold {sorted(arrays)}, the record {sorted(checksums)}")
    for name, array in arrays.items():
        if checksum(array) != checksums[name]:
            raise BadRecord(f"{path}: `{name}` in its inputs is not the array recorded (checksum differs)")
    return record, data
