"""The torch conformance history: what this torch release does with each version-dependent fact of the suite.

    python scripts/conformance.py measure OUT.json     # with the interpreter of the torch release to measure
    python scripts/conformance.py table A.json B.json ...   # the Markdown table of docs/torch-versions.md

`measure` runs, with the installed torch and the CPU kernels it dispatches to:
- every registered deviation's evidence (its grid cases and reproductions), whatever the deviation's version range
  says, and records whether torch still deviates there as the entry describes (a stage that another entry, in its
  own range, explains in this release does not count: that is another error of torch's);
- every bad call whose exception class differs between releases (bad_calls.Release), and records the class this torch
  raises in its forward and in its backward.
CUDA-only evidence is left out where there is no CUDA device.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def measure(out: Path) -> None:
    import numpy as np
    import torch

    from parity_tests.harness import devices, tables
    from parity_tests.harness.bad_calls import TABLE
    from parity_tests.harness.cases import build
    from parity_tests.harness.check import check
    from parity_tests.harness.evidence import grid_case, reproduction
    from parity_tests.harness.tables import Deviation, deviations

    torch.set_num_threads(1)
    here = devices.available()
    rows = []
    for d in deviations():
        unbounded = Deviation(
            d.id,
            d.what_torch_does,
            d.true_value,
            d.evidence,
            {k: v for k, v in d.entry.items() if k != "torch"},
        )
        proofs = [
            (case_id, grid_case(case_id).device, case_id) for case_id in d.entry.get("evidence_cases", [])
        ]
        proofs += [
            (entry, entry.get("device", "cpu"), f"reproduction {i}")
            for i, entry in enumerate(d.entry.get("reproduction", []), 1)
        ]
        for entry, device, label in proofs:
            if device not in here:
                continue
            loss = d.entry["loss"] if isinstance(d.entry["loss"], str) else d.entry["loss"][0]
            data = (
                build(grid_case(entry))
                if isinstance(entry, str)
                else reproduction(entry.get("loss", loss), entry)
            )
            saved = tables.deviations
            others = [x for x in saved() if x.id != d.id]
            try:
                # this entry alone, in every release
                tables.deviations = lambda unbounded=unbounded: [unbounded]
                result = check(data)
                # a stage another entry explains in this release (its own error, another cause) is not this one's
                tables.deviations = lambda others=others: others
                elsewhere = {s.stage for s in check(data).stages if s.torch_status == "deviation"}
            finally:
                tables.deviations = saved
            holds = [
                s.stage for s in result.stages if s.torch_status == "deviation" and s.stage not in elsewhere
            ]
            rows.append(
                {
                    "kind": "deviation",
                    "id": d.id,
                    "evidence": label,
                    "holds": bool(holds),
                    "stages": holds,
                    "errors": {s.stage: s.torch.error for s in result.stages},
                }
            )
    for bad in TABLE:
        if not bad.releases:
            continue
        (x, y), kwargs = bad.build()
        row = {"kind": "error", "id": f"{bad.loss}-{bad.id}"}
        for stage in ("forward", "backward"):
            xt = torch.tensor(x).requires_grad_(stage == "backward" and np.asarray(x).dtype.kind == "f")
            try:
                loss = getattr(torch.nn.functional, bad.loss)(
                    xt,
                    torch.tensor(y),
                    **{k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()},
                )
                if stage == "backward":
                    torch.autograd.grad(loss, xt, torch.ones_like(loss))
                row[stage] = "accepted"
            except Exception as exc:  # the class is the measurement
                row[stage] = type(exc).__name__
        rows.append(row)
    info = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpu": torch.backends.cpu.get_cpu_capability(),
        "rows": rows,
    }
    out.write_text(json.dumps(info, indent=1) + "\n")
    print(f"{out}: torch {info['torch']} ({info['cpu']}), {len(rows)} facts")


def table(paths: list[Path]) -> None:
    runs = [json.loads(p.read_text()) for p in paths]
    heads = [f"{r['torch'].split('+')[0]} {r['cpu']}" for r in runs]
    print("| deviation or bad call | evidence | " + " | ".join(heads) + " |")
    print("|---|---|" + "---|" * len(runs))
    keys = []
    for r in runs:
        for row in r["rows"]:
            key = (row["kind"], row["id"], row.get("evidence", ""))
            if key not in keys:
                keys.append(key)
    for kind, name, evidence in keys:
        cells = []
        for r in runs:
            found = next(
                (
                    x
                    for x in r["rows"]
                    if (x["kind"], x["id"], x.get("evidence", "")) == (kind, name, evidence)
                ),
                None,
            )
            if found is None:
                cells.append("n.a.")
            elif kind == "deviation":
                cells.append("holds" if found["holds"] else "no")
            else:
                cells.append(f"{found['forward']} / {found['backward']}")
        shown = (
            f"`{evidence}`"
            if evidence and not evidence.startswith("reproduction")
            else evidence or "forward / backward"
        )
        print(f"| `{name}` | {shown} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    command, *args = sys.argv[1:] or ["help"]
    if command == "measure" and len(args) == 1:
        measure(Path(args[0]))
    elif command == "table" and args:
        table([Path(a) for a in args])
    else:
        print(__doc__)
        sys.exit(2)
