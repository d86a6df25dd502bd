"""Hostile bytes through every pre-access stage: a Refusal or a verified request, nothing else."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway.core.clock import SystemClock
from gateway.core.outcome import Refusal, Verified
from gateway.core.stages import RequestChecks
from gateway.devkit.client import sign_request
from gateway.stores.operator_files import Loaded, load
from tests.harness import default_config

TEMPLATES = (
    "8.2_READ_INVENTORY_REQUEST_DUIS.XML",
    "ECS17b_4.1.1_SINGLE_SUCCESS_REQUEST_DUIS.XML",
    "11.1_UPDATE_FIRMWARE_REQUEST_DUIS.XML",
)


def verify_request(state: Loaded, raw: bytes) -> Verified:
    """The pre-access stages, as the pipeline runs them on a request that arrives."""
    checks = RequestChecks(state.versions, state.schemas, SystemClock())
    return checks.verify(raw, state.snapshots.current.certstore)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, shared_dir: Path) -> tuple[Loaded, list[bytes]]:
    state_dir = tmp_path_factory.mktemp("fuzz")
    state = load(default_config(state_dir), SystemClock())
    signed = [
        sign_request(
            (shared_dir / "duis/samples/requests" / name).read_bytes(),
            [state_dir / "pki"],
            counter=int(dt.datetime.now().timestamp()),
        )[0]
        for name in TEMPLATES
    ]
    return state, signed


def test_signed_templates_verify(world: tuple[Loaded, list[bytes]]) -> None:
    state, signed = world
    for raw in signed:
        assert verify_request(state, raw).header.schema_version == "5.4"


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_mutations_are_refused_or_verified(
    world: tuple[Loaded, list[bytes]], data: st.DataObject
) -> None:
    state, signed = world
    original = data.draw(st.sampled_from(signed))
    raw = bytearray(original)
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        kind = data.draw(st.sampled_from(["flip", "delete", "insert", "truncate"]))
        at = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
        if kind == "flip":
            raw[at] ^= data.draw(st.integers(min_value=1, max_value=255))
        elif kind == "delete":
            del raw[at : at + data.draw(st.integers(min_value=1, max_value=40))]
        elif kind == "insert":
            raw[at:at] = data.draw(
                st.sampled_from(
                    [
                        b"<!DOCTYPE x>",
                        b"&xxe;",
                        b"<!-- c -->",
                        b"<sr:Body/>",
                        b"\x00",
                        b"]]>",
                        b"\xff\xfe",
                    ]
                )
            )
        else:
            del raw[at:]
        if not raw:
            raw = bytearray(b"<")
    try:
        request = verify_request(state, bytes(raw))
    except Refusal as refusal:
        assert refusal.status in (400, 403)
        assert refusal.reason and refusal.detail
        return
    # Accepted: only if what was signed is untouched (a mutation in the prolog or in
    # the Signature's own layout is not signed content).
    assert signed_content(request.body) == signed_content(verify_request(state, original).body)


def signed_content(body: etree._Element) -> bytes:
    """The document as digested: inclusive C14N with the Signature removed."""
    return etree.tostring(body.getroottree(), method="c14n")
