"""The site's Flower ClientApp: a legacy NumPyClient (SecAgg+ needs it in Flower 1.42) around `SiteTrainer`.

Mods, outermost first: task timing (one site-log line per message), egress guard (checks the wire reply, SecAgg+
fields included), Flower's `secaggplus_mod` with full-strength masks (`bcvlm_client.secagg_mod`; only for messages
that carry SecAgg+ protocol configs: the server may run without SecAgg+), egress guard again (checks the plain fit
reply: update arrays and metrics, before masking).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
from flwr.app import Context, Message
from flwr.client import NumPyClient
from flwr.clientapp import ClientApp
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS

from bcvlm_client.egress_guard import egress_guard_mod
from bcvlm_client.reply_schema import COUNT_SCALE_KEY, EVALUATION_WEIGHT_KEY, SECURE_EVALUATION_KEY
from bcvlm_client.secagg_mod import full_strength_secaggplus_mod
from bcvlm_client.site_log import SITE_LOG
from bcvlm_client.task_timing import task_timing_mod
from bcvlm_model.file_logging import attach_log_file

if TYPE_CHECKING:  # torch, timm, transformers and opacus load only when a site trains or evaluates:
    from bcvlm_client.site_config import SiteConfig  # (and OmegaConf only when a message reaches the site's code)
    from bcvlm_client.site_training import SiteTrainer  # Flower starts a fresh process for every SecAgg+ stage.

LOGGER = logging.getLogger("bcvlm_client")
SIMULATION_DIR_ENV = "BCVLM_SIMULATION_DIR"
_TRAINERS: dict[str, SiteTrainer] = {}


def resolve_site_config(context: Context) -> SiteConfig:
    """`node_config["site-config"]` (deployment: simulation-only settings refused), else
    `$BCVLM_SIMULATION_DIR/sites/site_<partition-id>.yaml`."""
    from bcvlm_client.site_config import load_site_config, refuse_simulation_only_settings

    node_config = context.node_config
    if "site-config" in node_config:
        path = Path(str(node_config["site-config"]))
        return refuse_simulation_only_settings(load_site_config(path), source=str(path))
    if "partition-id" in node_config and os.environ.get(SIMULATION_DIR_ENV):
        path = Path(os.environ[SIMULATION_DIR_ENV]) / "sites" / f"site_{int(node_config['partition-id'])}.yaml"
    else:
        raise KeyError(
            "no site configuration: start the SuperNode with --node-config \"site-config='/path/site.yaml'\" "
            f"(or set {SIMULATION_DIR_ENV} in simulation)"
        )
    return load_site_config(path)


def log_to_site(site: SiteConfig) -> None:
    """Send the ClientApp's log to this site's log only: a simulation worker serves many sites one message at a time,
    and a handler per site left attached wrote every site's lines into every other site's log."""
    path = str((Path(site.state_dir) / SITE_LOG).absolute())
    for handler in list(LOGGER.handlers):
        other = getattr(handler, "baseFilename", None)
        if other is not None and other != path and Path(other).parts[-2:] == SITE_LOG.parts:
            LOGGER.removeHandler(handler)
            handler.close()
    attach_log_file(LOGGER, path)


def _use_threads(site: SiteConfig) -> None:
    """torch's intra-op threads from `compute.num_threads` (the SuperNode's env already carries OMP/MKL's)."""
    if site.compute.num_threads is not None:
        import torch

        torch.set_num_threads(int(site.compute.num_threads))


def trainer_for(site: SiteConfig) -> SiteTrainer:
    """One SiteTrainer per site and process, all over the process's one model (`bcvlm_client.process_model`)."""
    key = f"{site.site_id}|{Path(site.state_dir).resolve()}"
    if key not in _TRAINERS:
        from bcvlm_client.process_model import shared_federated_model
        from bcvlm_client.site_training import SiteTrainer

        _use_threads(site)
        _TRAINERS[key] = SiteTrainer(site, model_factory=shared_federated_model)
    return _TRAINERS[key]


def optional_secaggplus_mod(msg: Message, context: Context, call_next: Callable) -> Message:
    """SecAgg+ (full-strength masks) for SecAgg+ messages; plain messages (server without SecAgg+) pass through."""
    if msg.has_content() and RECORD_KEY_CONFIGS in msg.content.config_records:
        return full_strength_secaggplus_mod(msg, context, call_next)
    return call_next(msg, context)


class SiteClient(NumPyClient):
    """NumPyClient adapter: Flower's fit/evaluate calls go to the site's SiteTrainer."""

    def __init__(self, trainer: SiteTrainer, run_id: int) -> None:
        self.trainer = trainer
        self.run_id = int(run_id)

    def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
        raise RuntimeError("sites never provide initial parameters; the server sends the global model")

    def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[list[np.ndarray], int, dict[str, Any]]:
        from bcvlm_client.run_settings import RoundSettings

        settings = RoundSettings.from_config(config)
        if config.get(SECURE_EVALUATION_KEY):  # evaluation summed under SecAgg+ (a "fit" only in protocol terms)
            return self.trainer.secure_evaluation(
                parameters, settings, float(config[COUNT_SCALE_KEY]), int(config[EVALUATION_WEIGHT_KEY])
            )
        return self.trainer.fit(parameters, settings, run_id=self.run_id)

    def evaluate(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[float, int, dict[str, Any]]:
        from bcvlm_client.run_settings import RoundSettings

        return self.trainer.evaluate(parameters, RoundSettings.from_config(config))


def build_client_app(
    resolve_site: Callable[[Context], SiteConfig] | None = None,
    extra_mods: Sequence[Callable] = (),
    trainer_factory: Callable[[SiteConfig], SiteTrainer] | None = None,
) -> ClientApp:
    """A ClientApp for sites located by `resolve_site`; `extra_mods` run outermost (e.g. a test's recorder)."""
    resolve = resolve_site or resolve_site_config
    make_trainer = trainer_factory or trainer_for

    def client_fn(context: Context):
        site = resolve(context)
        log_to_site(site)
        return SiteClient(make_trainer(site), context.run_id).to_client()

    return ClientApp(
        client_fn=client_fn,
        mods=[*extra_mods, task_timing_mod, egress_guard_mod, optional_secaggplus_mod, egress_guard_mod],
    )


app = build_client_app()
