"""The extraction sections of a report page: fidelity against queries per attack and defense, the
defenses' costs, transfer and detection."""

from typing import Any

from worker.engine.reports.chart import Reference, Series, line_chart
from worker.engine.reports.parts import (
    esc,
    figure,
    finite,
    human,
    key_values,
    num,
    pct,
    section,
    table,
)
from worker.engine.reports.recipe import applicable


def _params(params: Any) -> str:
    """Parameters for people (`k 1; strategy random`), escaped; nothing for unset ones."""
    return esc(human(applicable(params))) if isinstance(params, dict) else ""


def _output(output: dict[str, Any]) -> str:
    """What the victim returns, for people: `probabilities, top 3, rounded to 2 decimals`."""
    parts = [str(output.get("kind", "?"))]
    if output.get("top_k") is not None:
        parts.append(f"top {output['top_k']}")
    if output.get("decimals") is not None:
        parts.append(f"rounded to {output['decimals']} decimals")
    rest = {k: v for k, v in output.items() if k not in ("kind", "top_k", "decimals")}
    return ", ".join(parts + ([human(rest)] if human(rest) else []))


def _overview(report: dict[str, Any]) -> str:
    """What was attacked, through which interface, with which pool and budgets."""
    output = report.get("victim_output") or {}
    pool = report.get("pool") or {}
    surrogate = report.get("surrogate") or {}
    return section(
        "Extraction",
        key_values(
            [
                ("evaluation samples", report.get("n_samples")),
                ("victim accuracy", pct(report.get("victim_accuracy"))),
                ("constant-guess fidelity", pct(report.get("chance_fidelity"))),
                ("victim output", _output(output) if output else None),
                ("query pool samples", pool.get("n_samples")),
                ("budgets", report.get("budgets") or None),
                ("surrogate", _params(surrogate)),
            ]
        ),
    )


def fidelity_series(attack: dict[str, Any]) -> list[Series]:
    """Fidelity against queries, one series per defense row (one budget is one point)."""
    return [
        Series(
            f"{row.get('defense', '?')} ({row.get('sees', '?')})",
            [
                (float(r["queries"]), float(r["fidelity"]))
                for r in row.get("results") or []
                if finite(r.get("queries")) and finite(r.get("fidelity"))
            ],
        )
        for row in attack.get("rows") or []
    ]


def _curve(attack: dict[str, Any], chance: Any) -> str:
    """Fidelity against queries per defense, beside a constant guess."""
    guess = [Reference("constant guess", float(chance))] if finite(chance) else []
    chart = line_chart(fidelity_series(attack), x_label="queries", y_label="fidelity", references=guess)
    return figure(
        chart,
        f"{attack.get('label', '?')}: fidelity against queries, per defense; the dotted line is a constant "
        "guess of the victim's commonest label.",
    )


def _attack_table(attack: dict[str, Any]) -> str:
    """Every row and budget of one attack, with transfer at the largest budget."""
    rows = []
    for row in attack.get("rows") or []:
        results = row.get("results") or []
        for index, result in enumerate(results):
            transfer = result.get("transfer") if index == len(results) - 1 else None
            rates = ", ".join(
                f"eps {num(t.get('eps'))}: {pct(t.get('transfer_success_rate'))}" for t in transfer or []
            )
            rows.append(
                [
                    esc(row.get("defense"))
                    + (f" <em>({esc(row['known_as'])})</em>" if row.get("known_as") else ""),
                    esc(row.get("sees")),
                    num(result.get("budget")),
                    num(result.get("queries")),
                    pct(result.get("fidelity")),
                    pct(result.get("surrogate_accuracy")),
                    pct(result.get("victim_accuracy")),
                    rates or "—",
                ]
            )
    headers = [
        "defense",
        "attacker sees",
        "budget",
        "queries",
        "fidelity",
        "surrogate acc.",
        "victim acc.",
        "transfer",
    ]
    caption = f"<p>{esc(attack.get('paper', ''))} {_params(attack.get('params'))}</p>"
    return f"<h3>{esc(attack.get('label', attack.get('name', '?')))}</h3>{caption}{table(headers, rows)}"


def _defenses(report: dict[str, Any]) -> str:
    """Each defense's cost to honest callers beside the best fidelity attackers reached against it."""
    rows = [
        [
            esc(d.get("name")) + (" <em>(always reported)</em>" if d.get("implicit") else ""),
            _params(d.get("params")) or "none",
            esc("yes" if d.get("keeps_top_label") else "not promised"),
            pct(d.get("label_change_rate")),
            pct(d.get("accuracy")),
            num(d.get("mean_l1_score_change")),
            pct(d.get("attacker_fidelity")),
            pct(d.get("label_attacker_fidelity")),
        ]
        for d in report.get("defenses") or []
    ]
    headers = [
        "defense",
        "parameters",
        "keeps top label",
        "label changes",
        "honest accuracy",
        "mean L1 change",
        "best attacker fidelity",
        "label-only attacker fidelity",
    ]
    note = (
        "<p>A defense that keeps the top label cannot stop an attacker who trains on labels: compare its "
        "row with the label-only attacker's fidelity.</p>"
    )
    return section("Defenses", note, table(headers, rows)) if rows else ""


def _transfer(report: dict[str, Any]) -> str:
    """The white-box rate on the victim, beside which the transfer rates above stand."""
    transfer = report.get("transfer")
    if not isinstance(transfer, dict):
        return ""
    rows = [
        [num(w.get("eps")), pct(w.get("attack_success_rate")), num(w.get("n_attacked"))]
        for w in transfer.get("white_box") or []
    ]
    text = (
        f"<p>PGD ({esc(transfer.get('norm'))}) crafted on each surrogate; its success on the victim among "
        "victim-correct samples is in the attack tables above.</p>"
    )
    white = (
        table(["eps", "white-box success on the victim", "attacked"], rows)
        if rows
        else "<p>The victim has no gradients: no white-box figure.</p>"
    )
    return section("Transfer", text, white)


def _detection(report: dict[str, Any]) -> str:
    """Each detector's alarm per attack stream and on the benign stream."""
    rows = []
    for detector in report.get("detection") or []:
        benign = detector.get("benign") or {}
        rows.append(
            [
                esc(detector.get("name")),
                esc("benign (evaluation queries)"),
                num(benign.get("n_queries")),
                num(benign.get("alarm_at_query")) if benign.get("alarm_at_query") is not None else "no alarm",
            ]
        )
        for stream in detector.get("streams") or []:
            alarm = stream.get("alarm_at_query")
            rows.append(
                [
                    esc(detector.get("name")),
                    esc(stream.get("attack")),
                    num(stream.get("n_queries")),
                    num(alarm) if alarm is not None else "no alarm",
                ]
            )
    return (
        section("Detection", table(["detector", "stream", "queries", "alarm at query"], rows)) if rows else ""
    )


def render_extraction_sections(report: dict[str, Any]) -> str:
    """The extraction report's own sections, from the JSON alone."""
    attacks = [a for a in report.get("attacks") or [] if isinstance(a, dict)]
    curves = "".join(_curve(a, report.get("chance_fidelity")) for a in attacks)
    tables = "".join(_attack_table(a) for a in attacks)
    return "".join(
        [
            _overview(report),
            section("Fidelity against queries", curves),
            section("Attacks", tables),
            _defenses(report),
            _transfer(report),
            _detection(report),
        ]
    )
