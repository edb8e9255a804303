"""A run's summary, from its result lines: Markdown (`summary.md`, and the GitHub job summary) and a
self-contained HTML page (`summary.html`).

The first line of summary.md is the run's outcome, PASS, FAIL or INCOMPLETE, with the reason (harness/run.py
decides it from pytest's own reports). Then, in this order: what ran and how to read the counts; numeric failures
(which side is wrong, by loss and cause); exceptions, bad results, time-outs and crashes; what the candidate does
not implement (the coverage table); what torch was not judged on (it cannot differentiate twice there); the parity
matrices; the registered deviations; error parity; determinism,
invalid inputs and the fuzz where they ran.
"""

from __future__ import annotations

import html
import json
import os
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from parity_tests.harness.stages import SECOND_ORDER, STAGES

DTYPE_ORDER = ["float64", "float32", "float16", "bfloat16"]
DOCS = (
    ("Reading a failure", "README.md#reading-a-failure"),
    ("Tolerances and their evidence", "docs/tolerances.md"),
    ("Registered torch deviations", "docs/deviations.md"),
    ("Runs, outcomes and exit codes", "docs/runs.md"),
)
# The checkout the suite runs from, if it runs from one: an installed suite ships no docs.
SOURCE = Path(__file__).resolve().parents[2]
LISTED = 20  # cases listed per group before "... and N more"
HTML_LISTED = 200  # failures shown in full on the HTML page


def read_rows(run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """The result lines of a run, by kind (a line cut short by a dying process is skipped)."""
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for path in sorted((run_dir / "rows").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            rows[row.pop("kind")].append(row)
    return rows


def write(run_dir: Path, info: dict[str, Any]) -> Path:
    """summary.md and summary.html of a run; the Markdown also goes to the GitHub job summary. Returns the .md."""
    rows = read_rows(run_dir)
    path = run_dir / "summary.md"
    path.write_text(render_markdown(info, rows, run_dir))
    (run_dir / "summary.html").write_text(render_html(info, rows, run_dir))
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with open(step_summary, "a") as f:
            f.write(render_markdown(info, rows))
    return path


def docs_links(run_dir: Path | None) -> list[str]:
    """The docs as links relative to the run's folder where the suite runs from a checkout; by name elsewhere (an
    installed suite, the GitHub job summary), where a relative link would lead nowhere."""
    if run_dir is not None and (SOURCE / "docs" / "runs.md").is_file():
        return [
            f"- [{title}]({os.path.relpath(SOURCE / page, run_dir)}{'#' + anchor if anchor else ''})"
            for title, (page, _, anchor) in ((t, link.partition("#")) for t, link in DOCS)
        ]
    return [f"- {title}: `{link}` in the loss-parity source" for title, link in DOCS]


# --- what the rows say -------------------------------------------------------------------------------------------


def case_counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    counts = Counter(r["outcome"] for r in rows)
    wrong = Counter(s["wrong"] for r in rows for s in r["stages"] if s["wrong"])
    return {
        "cases": len(rows),
        "passed": counts["passed"],
        "failed": counts["failed"],
        "deviation": counts["deviation"],
        # a case with a stage the candidate does not implement: it passed where it is implemented, or nowhere
        "partial": sum(
            r["outcome"] == "unsupported" and any(s.get("candidate") != "unsupported" for s in r["stages"])
            for r in rows
        ),
        "unsupported": sum(
            r["outcome"] == "unsupported" and all(s.get("candidate") == "unsupported" for s in r["stages"])
            for r in rows
        ),
        "wrong candidate": sum(any(s["wrong"] in ("candidate", "both") for s in r["stages"]) for r in rows),
        "wrong torch": sum(any(s["wrong"] in ("torch", "both") for s in r["stages"]) for r in rows),
        "stages wrong": sum(wrong.values()),
    }


def _is_exception(stage: dict[str, Any]) -> bool:
    detail = stage.get("candidate_detail") or {}
    problem = detail.get("problem") or ""
    return bool(problem) and (
        " raised " in problem or " returned " in problem or " changed " in problem or "not called" in problem
    )


def failures(rows: list[dict[str, Any]]) -> tuple[list, list]:
    """(numeric failures, exceptions and bad results): (row, stage) pairs."""
    numeric, exceptions = [], []
    for r in rows:
        for s in r["stages"]:
            if s["status"] == "fail":
                (exceptions if _is_exception(s) else numeric).append((r, s))
    return numeric, exceptions


def matrix(rows: list[dict[str, Any]], party: str) -> dict[tuple[str, str, str, str], tuple[float, float]]:
    """(loss, stage, dtype, device) -> (worst headroom, worst error in eps) of `party` (torch or candidate) against
    the truth; torch's registered deviations left out."""
    worst: dict[tuple[str, str, str, str], tuple[float, float]] = {}
    for r in rows:
        for s in r["stages"]:
            error = s[f"{party}_error"]
            if error is None or (party == "torch" and s["torch"] == "deviation"):
                continue
            key = (r["loss"], s["stage"], r["dtype"], r["device"])
            headroom = error / s["tolerance"] if s["tolerance"] else float(error > 0)
            if key not in worst or headroom > worst[key][0]:
                worst[key] = (headroom, error)
    return worst


SECOND_ORDER_FEATURE = "second order"


def _support(stages: list[dict[str, Any]], failed: bool) -> str:
    statuses = {s["status"] for s in stages}
    if failed or "fail" in statuses:
        return "failing"
    return "unsupported" if "unsupported" in statuses else "supported"


def coverage(rows: list[dict[str, Any]]) -> dict[tuple[str, str], Counter]:
    """(loss, feature) -> counts of cases: supported (passed or deviation), unsupported, failing. The options are
    counted on the first order (the loss and its gradients) and the second order apart, as a feature of its own:
    a candidate without a double backward declines the second order, not every option."""
    table: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for r in rows:
        second = [s for s in r["stages"] if s["stage"].split(" vs ")[0] in SECOND_ORDER]
        first = [s for s in r["stages"] if s not in second]
        second_failed = any(s["status"] == "fail" for s in second)
        # a failure of no stage (lost evidence) counts as the first order's
        kind = _support(first, r["outcome"] == "failed" and not second_failed)
        for feature in r["features"]:
            table[(r["loss"], feature)][kind] += 1
        if second:
            table[(r["loss"], SECOND_ORDER_FEATURE)][_support(second, False)] += 1
    return table


def declined(rows: list[dict[str, Any]]) -> tuple[list[str], list[tuple[str, str]]]:
    """(losses the candidate implements no case of, (loss, feature) it declines wherever the feature appears while
    it supports cases of the loss without it)."""
    table = coverage(rows)
    losses = sorted({loss for loss, _ in table})
    implemented = {loss for (loss, _), c in table.items() if c["supported"] or c["failing"]}
    features = [
        (loss, feature)
        for (loss, feature), c in sorted(table.items())
        if c["unsupported"] and not c["supported"] and not c["failing"] and loss in implemented
    ]
    return [loss for loss in losses if loss not in implemented], features


def unsupported_reasons(rows: list[dict[str, Any]]) -> Counter:
    return Counter(
        (r["loss"], s["stage"], s["unsupported"]) for r in rows for s in r["stages"] if s["unsupported"]
    )


def torch_unavailable(rows: list[dict[str, Any]]) -> Counter:
    """(loss, stage, dtype, device, why) -> stages torch had no value for (it cannot differentiate twice there)."""
    return Counter(
        (r["loss"], s["stage"], r["dtype"], r["device"], s["torch_unavailable"])
        for r in rows
        for s in r["stages"]
        if s.get("torch_unavailable")
    )


def deviations(rows: list[dict[str, Any]]) -> tuple[Counter, dict[str, list[str]]]:
    """(deviation -> stages it explained, deviation -> cases whose evidence was lost)."""
    explained = Counter(s["deviation"] for r in rows for s in r["stages"] if s["deviation"])
    lost: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        for d in r.get("lost_evidence", []):
            lost[d].append(r["case_id"])
    return explained, lost


# --- Markdown ------------------------------------------------------------------------------------------------------


def _fmt_error(value: float | None) -> str:
    return "-" if value is None else ("inf" if value == float("inf") else f"{value:.3g}")


def describe_stage(s: dict[str, Any]) -> str:
    """'grad_input: candidate 12.1 eps, torch 3.0 eps (tolerance 8 eps, k 2); candidate wrong'."""
    parts = []
    if s.get("candidate") not in (None, "truth", "unsupported"):
        parts.append(f"candidate {_fmt_error(s['candidate_error'])} eps")
    if s["torch"] == "unavailable":
        parts.append("torch not judged (no value)")
    else:
        parts.append(
            f"torch {_fmt_error(s['torch_error'])} eps"
            + (" (registered deviation)" if s["torch"] == "deviation" else "")
        )
    text = f"{s['stage']}: {', '.join(parts)} (tolerance {s['tolerance']:g} eps)"
    if s.get("candidate") == "parity":
        text += ", the candidate equals torch's value"
    if s.get("wrong"):
        text += f"; wrong: {s['wrong']}"
    return text


def render_markdown(
    info: dict[str, Any], rows: dict[str, list[dict[str, Any]]], run_dir: Path | None = None
) -> str:
    parity = rows.get("parity", [])
    out = [f"{info['outcome']}: {info['reason']}", "", "# loss-parity summary", ""]
    out += [f"- {k}: {v}" for k, v in info.get("header", {}).items()]
    out += [
        f"- run: `{info.get('run_id', '?')}`, finished {info.get('finished', 'never (the process died)')}",
        "",
    ]
    out += _counts(info, parity)
    numeric, exceptions = failures(parity)
    out += _failures_section("Numeric failures", numeric, parity)
    out += _exceptions_section(exceptions, rows.get("incident", []))
    out += _coverage_section(parity)
    out += _unavailable_section(parity)
    out += _matrices(parity)
    out += _deviations_section(parity)
    out += _errors_section(rows.get("errors", []))
    out.append(render_determinism(rows.get("determinism", [])))
    out.append(render_invalid(rows.get("invalid", [])))
    out.append(render_fuzz(rows.get("fuzz", [])))
    out += ["", "## Read more", "", *docs_links(run_dir)]
    return "\n".join(line for line in out if line is not None) + "\n"


def _counts(info: dict[str, Any], parity: list[dict[str, Any]]) -> list[str]:
    t = info.get("items", {})
    c = case_counts(parity)
    return [
        "## What ran",
        "",
        "- **Test items** (what pytest counts, and what the exit code and junit.xml report): "
        f"{t.get('collected', '?')} "
        f"collected, {t.get('reported', 0)} reported: {t.get('passed', 0)} passed, {t.get('failed', 0)} failed, "
        f"{t.get('error', 0)} errors, {t.get('crashed', 0)} crashed, {t.get('xfailed', 0)} xfailed, "
        f"{t.get('skipped', 0)} skipped.",
        f"- **Cases** (one loss, option combination, shape, value regime, dtype, device and seed; a parity item "
        f"runs the cases that differ only in shape): {c['cases']}: {c['passed']} passed, {c['failed']} failed "
        f"({c['wrong candidate']} with the candidate wrong, {c['wrong torch']} with torch wrong), "
        f"{c['deviation']} with a registered torch deviation, {c['partial']} passed in every stage the "
        f"candidate implements (it lacks others: see below), {c['unsupported']} not implemented by the candidate "
        "at all.",
        "",
    ]


def _group_key(row: dict[str, Any], stage: dict[str, Any]) -> tuple[str, str, str]:
    return (stage["wrong"] or "?", row["loss"], stage["cause"] or "?")


def _failures_section(title: str, pairs: list, parity: list[dict[str, Any]]) -> list[str]:
    out = [f"## {title}", ""]
    if not pairs:
        return [*out, "None.", ""]
    groups: dict[tuple[str, str, str], list] = defaultdict(list)
    for r, s in pairs:
        groups[_group_key(r, s)].append((r, s))
    for (wrong, loss, why), members in sorted(groups.items()):
        out.append(f"### {wrong} wrong: {loss}, {why} ({len(members)})")
        out += [f"- `{r['case_id']}` {describe_stage(s)}" for r, s in members[:LISTED]]
        if len(members) > LISTED:
            out.append(f"- ... and {len(members) - LISTED} more (records under `failures/`)")
        out.append("")
    lost = [(r, d) for r in parity for d in r.get("lost_evidence", [])]
    if lost:
        out.append("### the registry is out of date: torch no longer deviates on an evidence case")
        out += [f"- `{r['case_id']}`: `{d}` explains none of its stages" for r, d in lost]
        out.append("")
    return out


def _exceptions_section(pairs: list, incidents: list[dict[str, Any]]) -> list[str]:
    out = ["## Exceptions, bad results, time-outs and crashes", ""]
    if not pairs and not incidents:
        return [*out, "None.", ""]
    for r, s in pairs[:LISTED]:
        problem = (s.get("candidate_detail") or {}).get("problem", "")
        out.append(f"- `{r['case_id']}` {s['stage']}: {problem.splitlines()[0] if problem else ''}")
    if len(pairs) > LISTED:
        out.append(f"- ... and {len(pairs) - LISTED} more (records under `failures/`)")
    for i in incidents:
        out.append(
            f"- {i['outcome']}: {i['message']}" + (f"; replay: `{i['replay']}`" if i.get("replay") else "")
        )
    return [*out, ""]


def _coverage_section(parity: list[dict[str, Any]]) -> list[str]:
    out = ["## Not implemented by the candidate", ""]
    reasons = unsupported_reasons(parity)
    if not reasons:
        return [*out, "Everything that ran is implemented.", ""]
    losses, features = declined(parity)
    if losses:
        out += ["Not implemented at all: " + ", ".join(f"**{loss}**" for loss in losses) + ".", ""]
    if features:
        out.append(
            "Declined wherever it appears: " + ", ".join(f"**{loss}: {f}**" for loss, f in features) + "."
        )
        out.append("")
    out.append("Why, as the candidate said it (stage cases):")
    out.append("")
    for (loss, stage, why), n in reasons.most_common(12):
        out.append(f"- {loss} {stage} ({n}): {why.splitlines()[0]}")
    out += ["", "Coverage, in cases (a case counts under each option it exercises):", ""]
    out += ["| loss | option | supported | unsupported | failing |", "|---|---|---|---|---|"]
    for (loss, feature), c in sorted(coverage(parity).items()):
        out.append(f"| {loss} | {feature} | {c['supported']} | {c['unsupported']} | {c['failing']} |")
    return [*out, ""]


def _unavailable_section(parity: list[dict[str, Any]]) -> list[str]:
    found = torch_unavailable(parity)
    if not found:
        return []
    out = [
        "## Not judged for torch",
        "",
        "Stages torch has no value for (it cannot differentiate twice there): torch is not judged on them, the "
        "candidate still is.",
        "",
        "| loss | stage | dtype | device | stages | why |",
        "|---|---|---|---|---|---|",
    ]
    for (loss, stage, dtype, device, why), n in sorted(found.items()):
        out.append(f"| {loss} | {stage} | {dtype} | {device} | {n} | {why.splitlines()[0]} |")
    return [*out, ""]


def _loss_then_stage(key: tuple[str, str]) -> tuple[str, int, str]:
    """Rows in the order of the stages (first order, then second; `<stage> vs cpu` after its stage)."""
    loss, stage = key
    base = stage.split(" ")[0]
    return loss, STAGES.index(base) if base in STAGES else len(STAGES), stage


def _matrix_table(worst: dict) -> list[str]:
    if not worst:
        return ["No stage compared.", ""]
    dtypes = sorted({k[2] for k in worst}, key=DTYPE_ORDER.index)
    cols = [(dt, dev) for dev in sorted({k[3] for k in worst}) for dt in dtypes]
    out = [
        "| loss | stage | " + " | ".join(f"{dt} {dev}" for dt, dev in cols) + " |",
        "|---|---|" + "---|" * len(cols),
    ]
    for loss, stage in sorted({k[:2] for k in worst}, key=_loss_then_stage):
        cells = []
        for dt, dev in cols:
            h = worst.get((loss, stage, dt, dev))
            cells.append("-" if h is None else f"{h[0]:.2f} ({_fmt_error(h[1])})")
        out.append(f"| {loss} | {stage} | " + " | ".join(cells) + " |")
    return [*out, ""]


def _matrices(parity: list[dict[str, Any]]) -> list[str]:
    out = [
        "## Parity matrix",
        "",
        "Worst error / tolerance over the cases of each loss and stage (above 1 fails); the worst error in eps of "
        "the dtype in brackets. `<stage> vs cpu`: torch on the device against torch on cpu.",
        "",
        "### torch against the truth (registered deviations left out)",
        "",
        *_matrix_table(matrix(parity, "torch")),
    ]
    candidate = matrix(parity, "candidate")
    if candidate:
        out += ["### the candidate against the truth", "", *_matrix_table(candidate)]
    return out


def _deviations_section(parity: list[dict[str, Any]]) -> list[str]:
    explained, lost = deviations(parity)
    out = [
        "## Registered torch deviations",
        "",
        "Stages each deviation explained in this run (it excuses torch only). A deviation whose evidence case ran "
        "and no longer deviates fails the run: torch may have been fixed there.",
        "",
    ]
    names = sorted(set(explained) | set(lost))
    if not names:
        return [*out, "None showed.", ""]
    for d in names:
        out.append(
            f"- `{d}`: explained {explained[d]} stages"
            + (f"; **no longer deviates on {', '.join(lost[d])}**" if lost.get(d) else "")
        )
    return [*out, ""]


def _errors_section(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    out = [
        "## Error parity",
        "",
        "Bad calls that torch rejects: the candidate must reject them with the same exception class (the reference "
        "also names the argument in its message).",
        "",
        "| loss | calls | agree | differ | unsupported |",
        "|---|---|---|---|---|",
    ]
    by_loss: dict[str, Counter] = defaultdict(Counter)
    for r in rows:
        by_loss[r["loss"]][r["outcome"]] += 1
    for loss, c in sorted(by_loss.items()):
        out.append(f"| {loss} | {sum(c.values())} | {c['agree']} | {c['differ']} | {c['unsupported']} |")
    differ = [r for r in rows if r["outcome"] == "differ"]
    if differ:
        out += ["", "Differences:", ""]
        out += [f"- `{r['loss']}-{r['id']}` ({r['stage']}): {r['message']}" for r in differ[:LISTED]]
    return [*out, ""]


def render_determinism(rows: list[dict[str, Any]]) -> str | None:
    if not rows:
        return None
    out = [
        "## Determinism",
        "",
        "The same call repeated on the same inputs, compared bitwise. A path torch documents as nondeterministic "
        "(it warns under `torch.use_deterministic_algorithms`) is reported; a difference elsewhere fails.",
        "",
        "| device | cases | bitwise identical | differing, documented by torch | differing, undocumented | "
        "flagged by torch, identical here |",
        "|---|---|---|---|---|---|",
    ]
    for device in sorted({r["device"] for r in rows}):
        mine = [r for r in rows if r["device"] == device]
        counts = [
            len(mine),
            sum(not r["differing"] for r in mine),
            sum(bool(r["differing"]) and bool(r["documented"]) for r in mine),
            sum(bool(r["differing"]) and not r["documented"] for r in mine),
            sum(not r["differing"] and bool(r["documented"]) for r in mine),
        ]
        out.append(f"| {device} | " + " | ".join(map(str, counts)) + " |")
    flagged = sorted({(r["device"], r["loss"], r["documented"]) for r in rows if r["documented"]})
    differing = [r for r in rows if r["differing"]]
    if flagged:
        out += ["", "Paths torch flags as nondeterministic:", ""]
        out += [f"- {device}, {loss}: {message.splitlines()[0]}" for device, loss, message in flagged]
    if differing:
        out += ["", "Cases whose bits changed between repeats:", ""]
        out += [
            f"- `{r['case_id']}`: {', '.join(r['differing'])}"
            + ("" if r["documented"] else " **(not documented by torch)**")
            for r in differing[:40]
        ]
        if len(differing) > 40:
            out.append(f"- ... and {len(differing) - 40} more")
    return "\n".join(out) + "\n"


def render_invalid(rows: list[dict[str, Any]]) -> str | None:
    if not rows:
        return None
    out = [
        "## Invalid inputs per device",
        "",
        "What torch does with inputs that its kernels check (`harness/invalid.py`): `error:<class>` at the call, "
        "`assert` (a device-side assert, run in a subprocess), `silent` (a result).",
        "",
        "| input | loss | device | recorded | observed | message |",
        "|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["name"], r["device"])):
        mark = "" if r["outcome"] == r["expected"] else " **differs**"
        message = r.get("message", "").replace("|", "/")[:100]
        out.append(
            f"| {r['name']} | {r['loss']} | {r['device']} | {r['expected']} | {r['outcome']}{mark} | {message} |"
        )
    return "\n".join(out) + "\n"


def render_fuzz(rows: list[dict[str, Any]]) -> str | None:
    if not rows:
        return None
    out = [
        "## Fuzz",
        "",
        "| loss | device | dtypes | examples | seconds | failure | deviations that showed |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["loss"], r["device"])):
        out.append(
            f"| {r['loss']} | {r['device']} | {', '.join(r['dtypes'])} | {r['examples']} | {r['seconds']} | "
            f"{r['failure'] or '-'} | {', '.join(sorted(r['deviations'])) or '-'} |"
        )
    return "\n".join(out) + "\n"


# --- HTML ------------------------------------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em;color:#1b1f24;max-width:1400px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #d0d7de}
.outcome{font-size:1.3em;font-weight:600;padding:.5em .8em;border-radius:6px;display:inline-block}
.PASS{background:#dafbe1;color:#116329}.FAIL{background:#ffebe9;color:#a40e26}.INCOMPLETE{background:#fff8c5;color:#7d4e00}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #d0d7de;padding:3px 8px;text-align:left}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
.h0{background:#dafbe1}.h1{background:#eafbdc}.h2{background:#fff8c5}.h3{background:#ffebe9;font-weight:600}
code,pre{font:12px ui-monospace,monospace;background:#f6f8fa;padding:1px 4px;border-radius:4px}
pre{padding:6px;white-space:pre-wrap}.failure{border:1px solid #d0d7de;border-radius:6px;padding:.5em 1em;margin:.6em 0}
.wrong{font-weight:600;color:#a40e26}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _cell_class(headroom: float) -> str:
    return "h0" if headroom < 0.5 else "h1" if headroom < 0.8 else "h2" if headroom <= 1 else "h3"


def _html_matrix(worst: dict) -> str:
    if not worst:
        return "<p>No stage compared.</p>"
    dtypes = sorted({k[2] for k in worst}, key=DTYPE_ORDER.index)
    cols = [(dt, dev) for dev in sorted({k[3] for k in worst}) for dt in dtypes]
    head = "".join(f"<th>{_e(dt)} {_e(dev)}</th>" for dt, dev in cols)
    body = []
    for loss, stage in sorted({k[:2] for k in worst}, key=_loss_then_stage):
        cells = []
        for dt, dev in cols:
            h = worst.get((loss, stage, dt, dev))
            cells.append(
                "<td>-</td>"
                if h is None
                else f'<td class="num {_cell_class(h[0])}" title="worst error {_fmt_error(h[1])} eps">{h[0]:.2f}</td>'
            )
        body.append(f"<tr><td>{_e(loss)}</td><td>{_e(stage)}</td>{''.join(cells)}</tr>")
    return f"<table><tr><th>loss</th><th>stage</th>{head}</tr>{''.join(body)}</table>"


def _html_failure(row: dict[str, Any], stage: dict[str, Any]) -> str:
    lines = [
        f"<div class='failure'><b><code>{_e(row['case_id'])}</code></b> &middot; {_e(stage['stage'])} &middot; "
        f"<span class='wrong'>wrong: {_e(stage['wrong'])}</span><br>{_e(describe_stage(stage))}"
    ]
    table = ["<table><tr><th>party</th><th>error (eps)</th><th>at</th><th>truth</th><th>its value</th></tr>"]
    for party, key in (("torch", "torch_detail"), ("candidate", "candidate_detail")):
        d = stage.get(key)
        if d and not d.get("problem"):
            table.append(
                f"<tr><td>{party}</td><td class='num'>{_fmt_error(d['error'])}</td><td>{_e(d['index'])}</td>"
                f"<td class='num'>{_e(d['expected'])}</td><td class='num'>{_e(d['actual'])}</td></tr>"
            )
    lines.append("".join(table) + "</table>")
    problem = (stage.get("candidate_detail") or {}).get("problem")
    if problem:
        lines.append(f"<pre>{_e(problem)}</pre>")
    if row.get("replay"):
        lines.append(f"replay: <code>{_e(row['replay'])}</code>")
    return "".join(lines) + "</div>"


def _inline(text: str) -> str:
    """Markdown's inline marks (`code`, **bold**, [text](link)) as HTML, the rest escaped."""
    out = _e(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", out)
    return re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r"<a href='\2'>\1</a>", out)


def _markdown_html(markdown: str) -> str:
    """The summary's Markdown sections (headings, lists, tables, paragraphs) as HTML."""
    out: list[str] = []
    table = False
    for line in markdown.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if set("".join(cells)) <= set("-"):
                continue  # the header's rule
            tag = "th" if not table else "td"
            if not table:
                out.append("<table>")
                table = True
            out.append("<tr>" + "".join(f"<{tag}>{_inline(c)}</{tag}>" for c in cells) + "</tr>")
            continue
        if table:
            out.append("</table>")
            table = False
        if line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")), 4)
            out.append(f"<h{level}>{_inline(line.lstrip('#').strip())}</h{level}>")
        elif line.startswith("- "):
            out.append(f"<li>{_inline(line[2:])}</li>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
    if table:
        out.append("</table>")
    return "\n".join(out)


def render_html(
    info: dict[str, Any], rows: dict[str, list[dict[str, Any]]], run_dir: Path | None = None
) -> str:
    """The page: the outcome, the header, the parity matrices in colour, each failure with its values, index and
    replay command, then the summary's other sections."""
    parity = rows.get("parity", [])
    numeric, exceptions = failures(parity)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>loss-parity: "
        f"{_e(info['outcome'])}</title><style>{_CSS}</style></head><body>",
        f"<div class='outcome {_e(info['outcome'])}'>{_e(info['outcome'])}: {_e(info['reason'])}</div>",
        "<h1>loss-parity summary</h1><ul>",
        *[f"<li>{_e(k)}: {_inline(str(v))}</li>" for k, v in info.get("header", {}).items()],
        f"<li>run: <code>{_e(info.get('run_id', '?'))}</code>, finished {_e(info.get('finished', 'never'))}</li></ul>",
        _markdown_html("\n".join(_counts(info, parity))),
        "<h2>Parity matrix: torch against the truth</h2>",
        "<p>Worst error / tolerance over the cases of each loss and stage (above 1 fails; hover for the error in eps "
        "of the dtype). Registered torch deviations left out.</p>",
        _html_matrix(matrix(parity, "torch")),
    ]
    candidate = matrix(parity, "candidate")
    if candidate:
        parts += ["<h2>Parity matrix: the candidate against the truth</h2>", _html_matrix(candidate)]
    for title, pairs in (("Numeric failures", numeric), ("Exceptions and bad results", exceptions)):
        shown = f", the first {HTML_LISTED}" if len(pairs) > HTML_LISTED else ""
        parts.append(f"<h2>{title} ({len(pairs)}{shown})</h2>")
        parts += [_html_failure(r, s) for r, s in pairs[:HTML_LISTED]] or ["<p>None.</p>"]
    for i in rows.get("incident", []):
        parts.append(
            f"<div class='failure'><b>{_e(i['outcome'])}</b>: {_e(i['message'])}"
            + (f"<br>replay: <code>{_e(i['replay'])}</code>" if i.get("replay") else "")
            + "</div>"
        )
    rest = [
        *_coverage_section(parity),
        *_unavailable_section(parity),
        *_deviations_section(parity),
        *_errors_section(rows.get("errors", [])),
        render_determinism(rows.get("determinism", [])) or "",
        render_invalid(rows.get("invalid", [])) or "",
        render_fuzz(rows.get("fuzz", [])) or "",
        "## Read more",
        *docs_links(run_dir),
    ]
    parts.append(_markdown_html("\n".join(rest)))
    parts.append("</body></html>")
    return "\n".join(parts)


def dead_run_info(run_dir: Path) -> dict[str, Any]:
    """The outcome of a run that never wrote run.json: INCOMPLETE, naming what its journals show running."""
    from parity_tests.harness.incidents import last_started

    running = []
    for journal in sorted((run_dir / "journal").glob("*.jsonl")):
        entry = last_started(journal)
        if entry:
            running.append(f"{entry['case']} ({journal.stem})")
    items = Counter()
    items_file = run_dir / "items.jsonl"
    if items_file.exists():
        for line in items_file.read_text().splitlines():
            try:
                items[json.loads(line)["outcome"]] += 1
            except (json.JSONDecodeError, KeyError):
                continue
    reason = "the run did not finish (its process died or was stopped)"
    if running:
        reason += "; running when it stopped: " + ", ".join(running)
    if items["failed"] or items["error"] or items["crashed"]:
        outcome = "FAIL"
        reason = f"{items['failed'] + items['error'] + items['crashed']} test items failed before " + reason
    else:
        outcome = "INCOMPLETE"
    return {
        "run_id": run_dir.name,
        "outcome": outcome,
        "reason": reason,
        "items": {"collected": "?", "reported": sum(items.values()), **items},
        "header": {"note": "rendered after the run from what it left"},
    }
