"""Simulation report: `metrics.json` and one self-contained `report.html` with base64-embedded PNG plots."""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any, Iterable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bcvlm_model.atomic_io import atomic_write_json, atomic_write_text  # noqa: E402
from bcvlm_model.privacy.privacy_unit import PrivacyUnit, unit_description  # noqa: E402

METHOD_ORDER = (
    "federated",
    "centralized",
    "dp_centralized",
    "local_only",
    "image_only",
    "centralized_no_site_fields",
    "public_pretrained",
    "oracle",
)
METHOD_LABELS = {
    "federated": "federated (VLM, DP + SecAgg+)",
    "centralized": "centralized (union of sites)",
    "dp_centralized": "DP-centralized (union of sites, one site's DP budget)",
    "local_only": "local-only (each site alone)",
    "image_only": "image-only (fusion ablation)",
    "centralized_no_site_fields": "centralized without site fields (ablation)",
    "public_pretrained": "public pretraining only (start point)",
    "oracle": "oracle (synthetic latent)",
}
REQUIRED_KEYS = ("tasks", "sites", "rounds", "methods")
MAX_SITES_IN_LEGEND = 12
"""With more virtual sites, per-site lines are drawn unlabelled (a 50-entry legend would hide the plot)."""


class ReportError(ValueError):
    """The metrics dict lacks what the report needs."""


def format_number(value: Any) -> str:
    """The one way numbers are written in the HTML (tests compare HTML cells with metrics.json through it)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4f}"
    return html.escape(str(value))


def lookup(metrics: dict[str, Any], key: str) -> Any:
    """Value at a dotted path such as `methods.federated.pooled_auc.malignancy` or `rounds.0.wall_time_s`."""
    node: Any = metrics
    for part in key.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def _lookup_or_none(metrics: dict[str, Any], key: str) -> Any:
    try:
        return lookup(metrics, key)
    except (KeyError, IndexError, TypeError):
        return None


def _cell(metrics: dict[str, Any], key: str) -> str:
    return f'<td data-key="{html.escape(key)}">{format_number(_lookup_or_none(metrics, key))}</td>'


def _png(fig: plt.Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _finite(values: Iterable[Any]) -> list[float]:
    return [float("nan") if v is None else float(v) for v in values]


def plot_auc_per_round(metrics: dict[str, Any]) -> plt.Figure:
    """Pooled (bold) and per-site (thin) AUC per round for each task, baselines as dashed lines."""
    tasks, rounds = metrics["tasks"], metrics["rounds"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4), squeeze=False)
    x = [r["round"] for r in rounds]
    for ax, task in zip(axes[0], tasks):
        for site in metrics["sites"]:
            ys = _finite(r.get("site_auc", {}).get(site, {}).get(task) for r in rounds)
            if any(not math.isnan(y) for y in ys):
                label = site if len(metrics["sites"]) <= MAX_SITES_IN_LEGEND else None
                ax.plot(x, ys, marker=".", linewidth=1, alpha=0.6, label=label)
        ax.plot(
            x,
            _finite(r.get("pooled_auc", {}).get(task) for r in rounds),
            marker="o",
            linewidth=2.5,
            color="black",
            label="pooled (federated)",
        )
        for method, style, colour in (
            ("centralized", "--", "tab:red"),
            ("dp_centralized", "--", "tab:orange"),
            ("local_only", ":", "tab:purple"),
            ("image_only", "-.", "tab:brown"),
        ):
            value = metrics["methods"].get(method, {}).get("pooled_auc", {}).get(task)
            if value is not None:
                ax.axhline(value, linestyle=style, color=colour, label=f"{method} (final)")
        ax.set_title(f"{task}: AUC on the sites' test sets")
        ax.set_xlabel("round")
        ax.set_ylabel("AUC")
        ax.set_ylim(0.3, 1.0)
        ax.set_xticks(x)
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncols=4)
    fig.tight_layout()
    return fig


def plot_final_roc(metrics: dict[str, Any]) -> plt.Figure:
    """Final ROC curve per task for every method that has one."""
    tasks = metrics["tasks"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.8 * len(tasks), 4.5), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for method in METHOD_ORDER:
            roc = metrics["methods"].get(method, {}).get("roc", {}).get(task)
            if roc and roc.get("fpr"):
                auc = metrics["methods"][method].get("pooled_auc", {}).get(task)
                ax.plot(roc["fpr"], roc["tpr"], label=f"{method} (AUC {format_number(auc)})")
        ax.plot([0, 1], [0, 1], color="lightgray", linewidth=1)
        ax.set_title(f"{task}: final ROC (pooled test sets)")
        ax.set_xlabel("1 - specificity")
        ax.set_ylabel("sensitivity")
        ax.set_aspect("equal")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def plot_epsilon(metrics: dict[str, Any]) -> plt.Figure:
    """Cumulative epsilon spent per site after each round."""
    rounds = metrics["rounds"]
    x = [r["round"] for r in rounds]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    markers = "os^vD<>px*"
    for index, site in enumerate(metrics["sites"]):
        ax.plot(
            x,
            _finite(r.get("epsilon", {}).get(site) for r in rounds),
            marker=markers[index % len(markers)],
            markersize=8 - 1.5 * (index % 3),
            alpha=0.8,
            label=site if len(metrics["sites"]) <= MAX_SITES_IN_LEGEND else None,
        )
    ax.set_ylim(bottom=0)
    ax.set_title("privacy spent per site (cumulative epsilon)")
    ax.set_xlabel("round")
    ax.set_ylabel("epsilon")
    ax.set_xticks(x)
    ax.grid(alpha=0.3)
    if len(metrics["sites"]) <= MAX_SITES_IN_LEGEND:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_bytes_and_time(metrics: dict[str, Any]) -> plt.Figure:
    """Bytes moved per round (up/down) and wall time per round."""
    rounds = metrics["rounds"]
    x = [r["round"] for r in rounds]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    up = [float(r.get("bytes_up") or 0) / 1e6 for r in rounds]
    down = [float(r.get("bytes_down") or 0) / 1e6 for r in rounds]
    width = 0.38
    left.bar([v - width / 2 for v in x], up, width, label="uploaded by sites")
    left.bar([v + width / 2 for v in x], down, width, label="sent to sites")
    left.set_title("MB per round (all sites)")
    left.set_xlabel("round")
    left.set_ylabel("MB")
    left.set_xticks(x)
    left.legend(fontsize=7)
    right.bar(x, [float(r.get("wall_time_s") or 0) for r in rounds], color="tab:green")
    right.set_title("wall time per round")
    right.set_xlabel("round")
    right.set_ylabel("seconds")
    right.set_xticks(x)
    for ax in (left, right):
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


def plot_methods(metrics: dict[str, Any]) -> plt.Figure:
    """Pooled AUC of every method side by side, per task."""
    tasks = metrics["tasks"]
    methods = [m for m in METHOD_ORDER if m in metrics["methods"]]
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    width = 0.8 / max(1, len(methods))
    for i, method in enumerate(methods):
        values = _finite(metrics["methods"][method].get("pooled_auc", {}).get(t) for t in tasks)
        positions = [j + (i - (len(methods) - 1) / 2) * width for j in range(len(tasks))]
        bars = ax.bar(positions, [0 if math.isnan(v) else v for v in values], width, label=method)
        for bar, value in zip(bars, values):
            ax.annotate(
                format_number(value),
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=6,
            )
    ax.set_xticks(range(len(tasks)), tasks)
    ax.set_ylim(0.3, 1.05)
    ax.set_ylabel("pooled test AUC")
    ax.set_title("federated vs baselines (same test sets)")
    ax.legend(fontsize=7, ncols=min(5, len(methods)), loc="upper center", bbox_to_anchor=(0.5, -0.1))
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


def _interval_text(interval: Any) -> str:
    return f"[{format_number(interval[0])}, {format_number(interval[1])}]"


def _cell_with_ci(metrics: dict[str, Any], key: str, ci_key: str) -> str:
    """A value cell followed by its 95% CI when the metrics have one."""
    interval = _lookup_or_none(metrics, ci_key)
    if not interval:
        return _cell(metrics, key)
    value = format_number(_lookup_or_none(metrics, key))
    return f'<td data-key="{html.escape(key)}">{value} <span class="ci">{_interval_text(interval)}</span></td>'


def _methods_table(metrics: dict[str, Any], level: str = "") -> str:
    """Every method's AUCs with CIs; `level` ".breast" reads the breast-level entries instead of the image-level."""
    tasks = metrics["tasks"]
    head = "".join(f"<th>{html.escape(t)} mean per-site AUC [95% CI]</th>" for t in tasks)
    head += "".join(f"<th>{html.escape(t)} pooled AUC [95% CI]</th>" for t in tasks)
    head += "".join(f"<th>{html.escape(t)} minus federated, mean per-site [95% CI]</th>" for t in tasks)
    rows = []
    for method in METHOD_ORDER:
        if method not in metrics["methods"] or _lookup_or_none(metrics, f"methods.{method}{level}") is None:
            continue
        base = f"methods.{method}{level}"
        cells = "".join(
            _cell_with_ci(metrics, f"{base}.mean_site_auc.{t}", f"{base}.mean_site_auc_ci.{t}") for t in tasks
        )
        cells += "".join(_cell_with_ci(metrics, f"{base}.pooled_auc.{t}", f"{base}.pooled_auc_ci.{t}") for t in tasks)
        cells += "".join(_ci_only(metrics, f"{base}.mean_site_auc_minus_federated_ci.{t}") for t in tasks)
        note = html.escape(str(metrics["methods"][method].get("note", "")))
        rows.append(f"<tr><th>{html.escape(METHOD_LABELS.get(method, method))}</th>{cells}<td>{note}</td></tr>")
    return f"<table><tr><th>method</th>{head}<th>how</th></tr>{''.join(rows)}</table>"


def _breast_section(metrics: dict[str, Any]) -> str:
    """Breast-level AUCs (the unit RSNA screening is scored on), or nothing for metrics without them."""
    about = metrics.get("breast_level")
    if not about:
        return ""
    breasts = ", ".join(f"{html.escape(t)} {n}" for t, n in about.get("breasts", {}).items())
    return (
        "<h2>Breast-level AUC</h2>"
        f'<p class="note">One case per breast (patient and side): its score is the mean of its images\' scores, its '
        f"label the max of their labels; CIs on the same patient resamples as above. Breasts: {breasts}. "
        f"Images without laterality, each counted as its own breast: {format_number(about.get('images_without_laterality'))}.</p>"
        + _methods_table(metrics, ".breast")
    )


def _ablation_section(metrics: dict[str, Any]) -> str:
    """The site-field ablation's paired differences, or nothing when the run did not include it."""
    if "centralized_no_site_fields" not in metrics["methods"]:
        return ""
    tasks = metrics["tasks"]
    base = "methods.centralized_no_site_fields"
    head = "".join(
        f"<th>{html.escape(t)} mean per-site [95% CI]</th><th>{html.escape(t)} pooled [95% CI]</th>" for t in tasks
    )
    cells = "".join(
        _cell_with_ci(metrics, f"{base}.{kind}_minus_centralized.{t}", f"{base}.{kind}_minus_centralized_ci.{t}")
        for t in tasks
        for kind in ("mean_site_auc", "pooled_auc")
    )
    return (
        "<h2>Site-field ablation</h2>"
        '<p class="note">The centralized baseline retrained and scored with <code>manufacturer</code> and '
        "<code>machine_id</code> left out of the report text (<code>text.drop_site_fields</code>). Those fields name "
        "the hospital: a drop in pooled AUC with no drop in mean per-site AUC is the site-prevalence shortcut.</p>"
        f"<table><tr><th>without site fields minus with</th>{head}</tr><tr><th>AUC difference</th>{cells}</tr></table>"
    )


def _ci_only(metrics: dict[str, Any], ci_key: str) -> str:
    interval = _lookup_or_none(metrics, ci_key)
    text = _interval_text(interval) if interval else "&ndash;"
    return f'<td data-ci="{html.escape(ci_key)}">{text}</td>'


def _site_table(metrics: dict[str, Any]) -> str:
    tasks = metrics["tasks"]
    methods = [m for m in METHOD_ORDER if "site_auc" in metrics["methods"].get(m, {})]
    head = "".join(f"<th>{html.escape(m)} {html.escape(t)}</th>" for m in methods for t in tasks)
    rows = []
    for site in metrics["sites"]:
        cells = "".join(_cell(metrics, f"methods.{m}.site_auc.{site}.{t}") for m in methods for t in tasks)
        rows.append(f"<tr><th>{html.escape(site)}</th>{cells}</tr>")
    return f"<table><tr><th>site (test AUC)</th>{head}</tr>{''.join(rows)}</table>"


def _rounds_table(metrics: dict[str, Any]) -> str:
    tasks, sites = metrics["tasks"], metrics["sites"]
    head = "".join(f"<th>pooled {html.escape(t)}</th>" for t in tasks)
    head += "".join(f"<th>&epsilon; {html.escape(s)}</th>" for s in sites)
    head += "<th>bytes up</th><th>bytes down</th><th>wall s</th>"
    rows = []
    for i, r in enumerate(metrics["rounds"]):
        cells = "".join(_cell(metrics, f"rounds.{i}.pooled_auc.{t}") for t in tasks)
        cells += "".join(_cell(metrics, f"rounds.{i}.epsilon.{s}") for s in sites)
        cells += "".join(_cell(metrics, f"rounds.{i}.{k}") for k in ("bytes_up", "bytes_down", "wall_time_s"))
        rows.append(f"<tr>{_cell(metrics, f'rounds.{i}.round')}{cells}</tr>")
    return f"<table><tr><th>round</th>{head}</tr>{''.join(rows)}</table>"


def _summary_table(metrics: dict[str, Any]) -> str:
    rows = metrics.get("split_summary") or []
    if not rows:
        return "<p>no split summary</p>"
    columns = list(rows[0].keys())
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(_cell(metrics, f"split_summary.{i}.{c}") for c in columns) + "</tr>" for i in range(len(rows))
    )
    return f"<table><tr>{head}</tr>{body}</table>"


STYLE = """body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:0.8em 0;font-size:0.85em}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f4f4f4}img{max-width:100%;display:block;margin:0.6em 0}.note{color:#555;font-size:0.9em}"""


def render_html(metrics: dict[str, Any]) -> str:
    """The report as one HTML string: tables of every number (cells carry `data-key`) and embedded PNG plots."""
    missing = [k for k in REQUIRED_KEYS if k not in metrics]
    if missing:
        raise ReportError(f"metrics dict lacks key(s) {missing}; it needs {list(REQUIRED_KEYS)}")
    plots = [
        ("AUC per round", plot_auc_per_round(metrics)),
        ("Final ROC curves", plot_final_roc(metrics)),
        ("Federated vs baselines", plot_methods(metrics)),
        ("Privacy spent", plot_epsilon(metrics)),
        ("Communication and time", plot_bytes_and_time(metrics)),
    ]
    images = "".join(
        f'<h3>{html.escape(title)}</h3><img alt="{html.escape(title)}" src="data:image/png;base64,{_png(fig)}">'
        for title, fig in plots
    )
    run = metrics.get("run", {})
    run_rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th>{_cell(metrics, f'run.{k}')}</tr>"
        for k, v in run.items()
        if not isinstance(v, (dict, list))
    )
    notes = "".join(f"<li>{html.escape(str(n))}</li>" for n in metrics.get("notes", []))
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>bcvlm simulation report</title>
<style>{STYLE}</style></head><body>
<h1>bcvlm federated simulation report</h1>
<p class="note">AUCs are on the virtual sites' held-out test patients. Pooled = all sites' test images together.
Epsilon is cumulative per site: {html.escape(_privacy_sentence(run))} The same numbers are in metrics.json next
to this file.</p>
<p class="note">95% CIs: patient-clustered bootstrap (patients resampled within sites, the same resamples for every
method, so a "minus federated" interval is a paired difference). Mean per-site AUC ranks cases within each hospital;
pooled AUC also rewards scores on one scale across hospitals.</p>
<table>{run_rows}</table><ul class="note">{notes}</ul>
<h2>Federated vs baselines</h2>{_methods_table(metrics)}
{_breast_section(metrics)}
{_ablation_section(metrics)}
<h2>Per-site test AUC (final)</h2>{_site_table(metrics)}
<h2>Per round</h2>{_rounds_table(metrics)}
<h2>Plots</h2>{images}
<h2>Virtual sites</h2>{_summary_table(metrics)}
</body></html>
"""


def _privacy_sentence(run: dict[str, Any]) -> str:
    """The DP guarantee in words, naming its unit (and the image unit's weakness)."""
    unit = run.get("privacy_unit", "none")
    if not run.get("dp") or unit == "none":
        return "no differential privacy in this run."
    return f"{unit_description(PrivacyUnit(unit))}, epsilon {run.get('target_epsilon')} per site."


def build_report(metrics: dict[str, Any], out_dir: str | Path) -> Path:
    """Write `metrics.json` and `report.html` into `out_dir`; return the report path."""
    out = Path(out_dir)
    page = render_html(metrics)
    atomic_write_json(out / "metrics.json", metrics)
    return atomic_write_text(out / "report.html", page)
