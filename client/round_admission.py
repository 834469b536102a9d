"""Round admission: a server's round instructions checked against the site's own YAML before anything trains.

The server is untrusted input at a site. It may ask a site to be more private, never less: an instruction outside
the site's limits (`limits.*`, `privacy.*`), or a preprocessing the site has no cache for, makes the site decline the
round; nothing is trained or charged.
"""

from __future__ import annotations

from dataclasses import dataclass

from bcvlm_client.preprocess_agreement import preprocessing_mismatch
from bcvlm_client.reply_schema import DeclineReason
from bcvlm_client.run_settings import RoundSettings
from bcvlm_client.site_config import SiteConfig


@dataclass(frozen=True)
class Refusal:
    """Why a round is declined: the code the server sees and the detail that stays in the site log."""

    reason: DeclineReason
    detail: str


def refuse_round(site: SiteConfig, settings: RoundSettings, steps: int) -> Refusal | None:
    """The first way `settings` (asking for `steps` DP-SGD steps) breaks the site's limits, or None."""
    limits, privacy = site.limits, site.privacy
    if privacy.enabled and not settings.dp:
        return Refusal(DeclineReason.DP_REQUIRED, "the server asks for training without DP; privacy.enabled is true")
    if not privacy.enabled and settings.dp:
        return Refusal(DeclineReason.DP_UNAVAILABLE, "the server asks for DP training; privacy.enabled is false")
    if privacy.enabled and settings.dp_trainable is None:
        return Refusal(
            DeclineReason.DP_UNSAFE_MODEL,
            "the server sent no DP-ready trainable set (dp-trainable: null) for a DP round",
        )
    if settings.model.kind not in limits.model_kinds:
        return Refusal(
            DeclineReason.MODEL_KIND_NOT_ALLOWED,
            f"model kind '{settings.model.kind}' is not in limits.model_kinds {[kind.value for kind in limits.model_kinds]}",
        )
    if settings.planned_rounds > limits.max_rounds:
        return Refusal(
            DeclineReason.ROUNDS_OVER_LIMIT,
            f"{settings.planned_rounds} planned rounds > limits.max_rounds={limits.max_rounds}",
        )
    if not 1 <= settings.server_round <= settings.planned_rounds:
        return Refusal(
            DeclineReason.ROUNDS_OVER_LIMIT,
            f"round {settings.server_round} is outside the planned 1..{settings.planned_rounds}",
        )
    if steps > limits.max_local_steps:
        return Refusal(
            DeclineReason.LOCAL_STEPS_OVER_LIMIT,
            f"{steps} local steps > limits.max_local_steps={limits.max_local_steps}",
        )
    mismatch = preprocessing_mismatch(site, settings.preprocess)
    if mismatch is not None:
        return Refusal(DeclineReason.PREPROCESS_MISMATCH, mismatch)
    return None


def effective_target_epsilon(site: SiteConfig, settings: RoundSettings) -> float:
    """The budget the noise is calibrated to: the site's own, or the server's request when that is smaller."""
    own = site.privacy.target_epsilon
    return min(own, settings.dp_target_epsilon) if settings.dp_target_epsilon is not None else own
