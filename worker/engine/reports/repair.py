"""The repair sections of a defense report page (backdoor_repair): before and after, the scans, the method."""

from typing import Any

from worker.engine.reports.chart import Series, line_chart
from worker.engine.reports.parts import esc, figure, finite, key_values, num, pct, section, table


def _before_after(repair: dict[str, Any]) -> str:
    """Clean accuracy and every trigger's success, uploaded beside repaired."""
    before, after = repair.get("before") or {}, repair.get("after") or {}
    target = (repair.get("real_trigger") or {}).get("target_class")
    rows = [["clean accuracy", pct(before.get("clean_accuracy")), pct(after.get("clean_accuracy"))]]
    if "real_trigger_success" in before or "real_trigger_success" in after:
        rows.append(
            [
                f"success of the supplied trigger (to class {esc(target)})",
                pct(before.get("real_trigger_success")),
                pct(after.get("real_trigger_success")),
            ]
        )
    reversed_after = after.get("reversed_trigger_success") or {}
    for label, value in sorted((before.get("reversed_trigger_success") or {}).items()):
        rows.append(
            [
                f"success of Neural Cleanse's reversed trigger of class {esc(label)}",
                pct(value),
                pct(reversed_after.get(label)),
            ]
        )
    note = (
        f"<p>Every figure is measured on the {esc(repair.get('n_held_out'))} held-out samples, the repaired "
        "model through onnxruntime on its exported bytes. A trigger's success is the share of inputs of "
        "other classes it sends to its class. The reversed triggers are reversed once, on the uploaded "
        "model, and stamped on both.</p>"
    )
    return note + table(["figure", "uploaded model", "repaired model"], rows)


def _scan_rows(scan: dict[str, Any]) -> list[list[str]]:
    """Per class: mask l1 norm, anomaly index, flag, reversed-trigger success."""
    return [
        [
            esc(row.get("label")),
            num(row.get("mask_l1")),
            num(row.get("anomaly_index")),
            "flagged" if row.get("flagged") else "",
            pct(row.get("trigger_success")),
        ]
        for row in scan.get("classes") or []
    ]


def _scans(repair: dict[str, Any]) -> str:
    """Neural Cleanse on the uploaded and on the repaired model."""
    parts = []
    for key, title in (("scan_before", "Uploaded model"), ("scan_after", "Repaired model")):
        scan = repair.get(key) or {}
        flagged = scan.get("flagged") or []
        verdict = f"class {esc(', '.join(map(str, flagged)))} flagged" if flagged else "no class flagged"
        threshold = num(scan.get("threshold"))
        parts.append(f"<h3>{title}: {verdict} (anomaly index threshold {threshold})</h3>")
        parts.append(
            table(["class", "mask l1", "anomaly index", "flag", "reversed-trigger success"], _scan_rows(scan))
        )
    return section("Neural Cleanse before and after", *parts)


def _method(report: dict[str, Any], repair: dict[str, Any]) -> str:
    """The method, its parameters, what it pruned and its fine-tuning curve."""
    method = repair.get("method") or {}
    actions = dict(repair.get("repair") or {})
    pruned = actions.pop("pruned", {}) or {}
    facts = key_values(
        [
            ("method", method.get("name")),
            ("paper", method.get("paper")),
            ("parameters", method.get("params") or {}),
            ("clean samples used", repair.get("n_clean")),
            ("Neural Cleanse steps per class", (report.get("defense") or {}).get("scan_steps")),
            *sorted(actions.items()),
        ]
    )
    parts = [facts]
    if pruned:
        parts.append(
            table(
                ["layer", "neurons pruned", "of"],
                [[esc(layer), num(v.get("pruned")), num(v.get("of"))] for layer, v in pruned.items()],
            )
        )
    curve = repair.get("training_curve") or []
    loss = [
        (float(r["epoch"]), float(r["loss"]))
        for r in curve
        if finite(r.get("epoch")) and finite(r.get("loss"))
    ]
    if loss:
        chart = line_chart([Series("fine-tuning loss", loss)], x_label="epoch", y_label="loss", share=False)
        parts.append(figure(chart, "Fine-tuning loss per epoch on the clean set."))
    return section("Repair method", *parts)


def render_attack_repairs(rows: list[dict[str, Any]]) -> str:
    """A poisoning attack's params.repair rows: per method, clean accuracy and success before and after."""
    if not rows:
        return ""
    body = [
        [
            esc(row.get("name")),
            pct((row.get("before") or {}).get("clean_accuracy")),
            pct((row.get("after") or {}).get("clean_accuracy")),
            pct((row.get("before") or {}).get("attack_success_rate")),
            pct((row.get("after") or {}).get("attack_success_rate")),
            _pruned((row.get("repair") or {}).get("pruned") or {}),
        ]
        for row in rows
    ]
    first = rows[0]
    note = (
        f"<p>Repairs of the largest-rate victim: each method trained on {esc(first.get('n_clean'))} held-out "
        f"samples, every figure measured on the other {esc(first.get('n_measured'))} through onnxruntime on "
        "the exported models; success is the planted trigger's.</p>"
    )
    head = ["method", "clean accuracy before", "after", "attack success before", "after", "neurons pruned"]
    return "<h4>Repair</h4>" + note + table(head, body)


def _pruned(pruned: dict[str, Any]) -> str:
    """Neurons pruned over all layers, as 'n of m', or empty when none were."""
    cut = sum(int(v.get("pruned") or 0) for v in pruned.values())
    total = sum(int(v.get("of") or 0) for v in pruned.values())
    return f"{cut} of {total}" if total else ""


def render_repair_sections(report: dict[str, Any]) -> str:
    """Every repair section, from the JSON report alone."""
    repair = report.get("repair") or {}
    return "".join(
        (
            section("Backdoor repair", _before_after(repair)),
            _scans(repair),
            _method(report, repair),
        )
    )
