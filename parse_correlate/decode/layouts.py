"""Readers that place a use case's values in its MMC element, by message code."""

from __future__ import annotations

from parse_correlate.decode.layouts_cs import CS_LAYOUTS
from parse_correlate.decode.layouts_ecs import ECS_REGISTER_LAYOUTS
from parse_correlate.decode.layouts_ecs_config import ECS_CONFIG_LAYOUTS
from parse_correlate.decode.layouts_ecs_logs import ECS_LOG_LAYOUTS
from parse_correlate.decode.layouts_gcs import GCS_LAYOUTS
from parse_correlate.decode.readers import Reader

LAYOUTS: dict[int, Reader] = {
    **ECS_REGISTER_LAYOUTS,
    **ECS_LOG_LAYOUTS,
    **ECS_CONFIG_LAYOUTS,
    **GCS_LAYOUTS,
    **CS_LAYOUTS,
}
