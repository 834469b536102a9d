"""The server's SecAgg+ with full-strength masks: unmasking expands seeds with ChaCha20 (`expand_masks`) and only
sites that confirm the same expansion in the setup stage take part in the round. Each round's field is the smallest
that holds the sum of the sampled sites' updates (`secagg_modulus`), so masked vectors travel as uint32, not int64."""

from __future__ import annotations

import importlib
import logging
from typing import Any, Iterable

from flwr.app import Message
from flwr.common import bytes_to_ndarray, ndarray_to_bytes
from flwr.common.secure_aggregation import secaggplus_utils
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.workflow.secure_aggregation.secaggplus_workflow import WorkflowState
from flwr.serverapp.grid import Grid

from bcvlm_model.privacy.mask_expansion import MASK_PRG_CONFIG_KEY, MASK_PRG_NAME, expand_masks
from bcvlm_model.privacy.secagg_field import secagg_modulus, unpack_masked_vector
from bcvlm_server.workflows import DropoutTolerantSecAggPlusWorkflow

LOGGER = logging.getLogger("bcvlm_server.secagg_masks")
_FLOWER_WORKFLOW = importlib.import_module("flwr.server.workflow.secure_aggregation.secaggplus_workflow")


def use_full_strength_masks() -> None:
    """Make Flower's server-side SecAgg+ unmask with `expand_masks` (process-wide, idempotent).

    Flower's unmask stage calls the module-level name `pseudo_rand_gen` to rebuild self masks and the pairwise masks
    of dropped sites; rebinding that one name changes the expansion and nothing else of the protocol.
    """
    current = _FLOWER_WORKFLOW.pseudo_rand_gen
    if current is expand_masks:
        return
    if current is not secaggplus_utils.pseudo_rand_gen:
        raise RuntimeError(
            f"Flower's secaggplus_workflow.pseudo_rand_gen was replaced by {current!r}; refusing to unmask"
        )
    _FLOWER_WORKFLOW.pseudo_rand_gen = expand_masks


def _is_setup(message: Message) -> bool:
    if not message.has_content():
        return False
    configs = message.content.config_records.get(RECORD_KEY_CONFIGS)
    return configs is not None and configs.get(Key.STAGE) == Stage.SETUP


class MaskHandshakeGrid:
    """Grid view for the setup stage: announces MASK_PRG_NAME and the round's modulus (sized for the sites sampled,
    `secagg_modulus`) to every site and drops setup replies that do not confirm the expansion (such a site would mask
    with another expansion and spoil the sum), so that site counts as lost."""

    def __init__(self, inner: Grid, quantization_range: int) -> None:
        self.inner = inner
        self.quantization_range = int(quantization_range)
        self.modulus: int | None = None
        """The modulus announced in the last setup stage (None before one was sent)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        messages = list(messages)
        setups = [message for message in messages if _is_setup(message)]
        if setups:
            self.modulus = secagg_modulus(self.quantization_range, len(setups))
        for message in setups:
            configs = message.content.config_records[RECORD_KEY_CONFIGS]
            configs[MASK_PRG_CONFIG_KEY] = MASK_PRG_NAME
            configs[Key.MOD_RANGE] = self.modulus
        replies = []
        for reply in self.inner.send_and_receive(messages, timeout=timeout):
            if reply.has_content() and RECORD_KEY_CONFIGS in reply.content.config_records:
                confirmed = reply.content.config_records[RECORD_KEY_CONFIGS].get(MASK_PRG_CONFIG_KEY)
                if confirmed != MASK_PRG_NAME:
                    LOGGER.warning(
                        "SecAgg+: node %s did not confirm mask expansion %r (an older bcvlm or plain "
                        "Flower site?); it is left out of this round",
                        reply.metadata.src_node_id,
                        MASK_PRG_NAME.decode(),
                    )
                    continue
            replies.append(reply)
        return replies


class UnpackingGrid:
    """Grid view for the masked-vector stage: replies' packed masked vectors become int64 again before Flower sums
    them (Flower adds the arrays as they come; uint32 sums would wrap at 2**32, not at the round's modulus)."""

    def __init__(self, inner: Grid) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        replies = []
        for reply in self.inner.send_and_receive(messages, timeout=timeout):
            configs = reply.content.config_records.get(RECORD_KEY_CONFIGS) if reply.has_content() else None
            if configs is not None and Key.MASKED_PARAMETERS in configs:
                try:
                    arrays = unpack_masked_vector([bytes_to_ndarray(data) for data in configs[Key.MASKED_PARAMETERS]])
                except (TypeError, ValueError) as exc:
                    LOGGER.warning(
                        "SecAgg+: node %s sent an unusable masked vector (%s); it is left out of this round",
                        reply.metadata.src_node_id,
                        exc,
                    )
                    continue
                configs[Key.MASKED_PARAMETERS] = [ndarray_to_bytes(array) for array in arrays]
            replies.append(reply)
        return replies


class FullStrengthSecAggPlusWorkflow(DropoutTolerantSecAggPlusWorkflow):
    """bcvlm's SecAgg+ workflow: dropout-tolerant (see the parent), ChaCha20-expanded masks, and a per-round field
    just large enough for the sampled sites (the `modulus_range` argument is only Flower's upper bound check)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        use_full_strength_masks()

    def setup_stage(self, grid: Grid, context: LegacyContext, state: WorkflowState) -> bool:  # type: ignore[override]
        handshake = MaskHandshakeGrid(grid, self.quantization_range)
        proceed = super().setup_stage(handshake, context, state)  # type: ignore[arg-type]
        if handshake.modulus is not None:
            state.mod_range = handshake.modulus  # what the sites were told; the later stages sum and unmask in it
        return proceed

    def collect_masked_vectors_stage(
        self,
        grid: Grid,
        context: LegacyContext,  # type: ignore[override]
        state: WorkflowState,
    ) -> bool:
        return super().collect_masked_vectors_stage(UnpackingGrid(grid), context, state)  # type: ignore[arg-type]
