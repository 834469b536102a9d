"""Metadata rendered as text: versioned report template and leakage guard. The tokenizing batch collator loads torch
and the tokenizer, so it is imported from its own module, `bcvlm_model.text.collator`."""

from bcvlm_model.text.leakage_guard import LeakageError, check_report_fields, leakage_reason
from bcvlm_model.text.report_config import (
    DEFAULT_REPORT_FIELDS,
    SITE_IDENTIFYING_FIELDS,
    TEMPLATE_VERSION,
    ReportTemplateConfig,
    TextConfig,
)
from bcvlm_model.text.report_template import NOT_RECORDED, ReportTemplate, render_report

__all__ = [
    "DEFAULT_REPORT_FIELDS",
    "LeakageError",
    "NOT_RECORDED",
    "ReportTemplate",
    "ReportTemplateConfig",
    "SITE_IDENTIFYING_FIELDS",
    "TEMPLATE_VERSION",
    "TextConfig",
    "check_report_fields",
    "leakage_reason",
    "render_report",
]
