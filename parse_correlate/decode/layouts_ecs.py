"""Electricity meter registers, maximum demand, supply state, firmware and clock:
DLMS/COSEM reads -> their MMC elements (sans-IO).

Each layout reads the access-response in the order the use case's command asks for its
COSEM attributes (GBCS use-case definitions; the OBIS code of each position is noted),
and writes the MMC element's children in schema order. A failed attribute is left out;
MessageSuccess says whether every attribute came back.
"""

from __future__ import annotations

from parse_correlate.decode import cosem
from parse_correlate.decode.cosem import (
    Values,
    date_time,
    done,
    electricity,
    integer,
    octets,
    register,
)
from parse_correlate.decode.errors import DecodeError
from parse_correlate.decode.nodes import Node, branch, leaf
from parse_correlate.decode.readers import Reader, Reading, Source
from parse_correlate.gbcs_codes import MESSAGE_CODES

_CLOCK_INVALID, _CLOCK_DOUBTFUL = 0x01, 0x02  # DLMS clock status bits

# ---- registers ---------------------------------------------------------------------------


def _ecs17a(source: Source) -> Reading:
    # 1-0:2.8.0 active export (value, scaler/unit), 1-0:4.8.0 reactive export.
    values, reading = cosem.read(source)
    active = register(
        "ActiveExportRegister", "ActiveEnergyUnit", values.get(0), values.get(1), cosem.UNIT_WH
    )
    reactive = register(
        "ReactiveExportRegister",
        "ReactiveEnergyUnit",
        values.get(2),
        values.get(3),
        cosem.UNIT_VARH,
    )
    return done(reading, active, reactive)


def _ecs17b(source: Source) -> Reading:
    # Protected 0-0:43.2.8: (active import, scaler/unit, reactive import, scaler/unit
    # [, secondary active import]).
    values, reading = cosem.read(source)
    match values.plain(0):
        case None:
            return done(reading, electricity())
        case ((active, active_unit, reactive, reactive_unit, *rest),):
            pass
        case other:
            raise DecodeError(f"unexpected import register layout {other!r:.200}")
    secondary = None
    match rest:
        case []:
            pass
        case [int() as value]:
            secondary = register(
                "SecondaryActiveImportRegister", "ActiveEnergyUnit", value, None, cosem.UNIT_WH
            )
        case _:
            raise DecodeError(f"unexpected values after the import registers: {rest!r:.200}")
    imported = register(
        "ActiveImportRegister", "ActiveEnergyUnit", active, active_unit, cosem.UNIT_WH
    )
    reactive_register = register(
        "ReactiveImportRegister", "ReactiveEnergyUnit", reactive, reactive_unit, cosem.UNIT_VARH
    )
    registers = electricity(imported, reactive_register, secondary)
    return done(reading, registers or branch("Electricity"))


def _ecs17c(source: Source) -> Reading:
    # 0-0:94.44.34.20: (active power import, scaler/unit (W), primary element's power).
    values, reading = cosem.read(source)
    match values.get(0):
        case None:
            return done(reading)
        case (int() as power, scaler_unit, int() as primary):
            pass
        case other:
            raise DecodeError(f"unexpected active power layout {other!r:.200}")
    watts = cosem.scaled(power, scaler_unit, (cosem.UNIT_W,), "active power import")
    return done(
        reading,
        branch("ActivePowerImport", leaf("Value", watts), leaf("Unit", "W")),
        leaf("PrimaryActivePowerImportValue", primary),
    )


def _tou_values(name: str, registers: object, limit: int) -> list[Node]:
    if not isinstance(registers, list) or len(registers) > limit:
        raise DecodeError(f"{name} is not a list of at most {limit} registers")
    return [leaf(name, integer(v, name) or 0, index=str(i)) for i, v in enumerate(registers, 1)]


def _ecs17d(source: Source) -> Reading:
    # Protected 0-0:43.2.9: (TOU register matrix (48) [, secondary TOU registers (4)]).
    values, reading = cosem.read(source)
    match values.plain(0):
        case None:
            return done(reading, electricity())
        case ((list() as primary, *secondary),) if len(secondary) <= 1:
            pass
        case other:
            raise DecodeError(f"unexpected TOU register layout {other!r:.200}")
    collection = branch(
        "TariffTOURegisterCollection",
        *_tou_values("TOUPrimaryRegisterValue", primary, 48),
        *(_tou_values("TOUSecondRegisterValue", secondary[0], 4) if secondary else ()),
    )
    return done(reading, branch("Electricity", collection))


def _ecs17e(source: Source) -> Reading:
    # Protected 0-0:43.2.10: the TOU-with-blocks register matrix, 8 TOU rates for each of
    # 4 blocks, then the block counter matrix in the same order.
    values, reading = cosem.read(source)
    match values.plain(0):
        case None:
            return done(reading)
        case ((list() as both,),) if len(both) == 64:
            matrix, counters = both[:32], both[32:]
        case other:
            raise DecodeError(f"unexpected TOU-with-blocks layout {other!r:.200}")
    blocks = []
    for block in range(4):
        registers = _tou_values("RegisterMatrixTOUValue", matrix[block * 8 : block * 8 + 8], 8)
        counter = counters[block * 8 : block * 8 + 8]
        blocks.append(
            branch(
                "TariffBlock",
                *registers,
                *_tou_values("CounterMatrixTOUValue", counter, 8),
                index=str(block + 1),
            )
        )
    return done(reading, branch("TariffBlockTOURegisterCollection", *blocks))


def _ecs82(source: Source) -> Reading:
    # 0-0:19.10.0 meter balance.
    values, reading = cosem.read(source)
    return done(reading, cosem.optional_leaf("MeterBalance", integer(values.get(0), "balance")))


# ---- maximum demand ----------------------------------------------------------------------


def _max_demand(name: str, values: Values, value: int, capture: int, reset: int) -> Node | None:
    number = integer(values.get(value), name)
    if number is None or values.get(value + 1) is None:
        return None  # without its scaler and unit a register value means nothing
    number = cosem.scaled(number, values.get(value + 1), (cosem.UNIT_W,), name)
    return branch(
        name,
        leaf("Value", number),
        cosem.optional_leaf("CaptureTime", date_time(values.get(capture), "capture time")),
        cosem.optional_leaf("LastResetDateTime", date_time(values.get(reset), "reset time")),
    )


def _ecs18b(source: Source) -> Reading:
    # 0-0:94.44.5.0 and .1: last reset of 1-0:1.6.0 (MD active import) and 1-0:1.6.1
    # (MD over the configurable period), each (value, scaler/unit, capture time); then
    # 0-0:12.0.0, the schedule whose script selectors 1 and 2 start and end the period.
    values, reading = cosem.read(source)
    period = None
    match values.get(8):
        case None:
            pass
        case list() as entries:
            times = {}
            for entry in entries:
                match entry:
                    case (_, _, _, int() as selector, bytes() as switch_time, *_):
                        times[selector] = cosem.time_of_day(switch_time, "switch time")
                    case _:
                        raise DecodeError("max demand schedule entry has an unexpected form")
            if 1 in times and 2 in times:
                period = branch(
                    "MaxDemandConfigurableTimePeriod",
                    leaf("StartTime", str(times[1])),
                    leaf("EndTime", str(times[2])),
                )
        case other:
            raise DecodeError(f"unexpected max demand schedule {other!r:.80}")
    return done(
        reading,
        _max_demand("MaxDemandConfigurableTimeActivePowerImport", values, 5, 7, 1),
        _max_demand("MaxDemandActiveEnergyImport", values, 2, 4, 0),
        period,
    )


def _ecs18a(source: Source) -> Reading:
    # 0-0:94.44.5.2 last reset, 1-0:2.6.0 MD active export (value, scaler/unit, capture).
    values, reading = cosem.read(source)
    return done(reading, _max_demand("MaxDemandActiveEnergyExport", values, 1, 3, 0))


def _ecs45(source: Source) -> Reading:
    # 0-0:96.3.10 disconnect control, control_state: 0 disconnected, 1 connected,
    # 2 ready for reconnection (armed).
    values, reading = cosem.read(source)
    state = integer(values.get(0), "supply state")
    if state is None:
        return done(reading)
    names = {0: "Disabled", 1: "Enabled", 2: "Armed"}
    if state not in names:
        raise DecodeError(f"supply state {state} is not 0, 1 or 2")
    return done(reading, leaf("SupplyState", names[state]))


def _ecs52(source: Source) -> Reading:
    # 0-0:0.2.1 active firmware identifier (octet string), written as hex.
    values, reading = cosem.read(source)
    version = octets(values.get(0), "firmware version")
    return done(reading, leaf("FirmwareVersion", version) if version is not None else None)


def _ecs70(source: Source) -> Reading:
    # Set and adjust 0-0:1.0.0, then read back its time (attribute 2) and status (4).
    values, reading = cosem.read(source)
    moment = date_time(values.get(3), "device time")
    status = integer(values.get(4), "clock status")
    time_status = None
    if status is not None:
        label = (
            "invalid"
            if status & _CLOCK_INVALID
            else "unreliable"
            if status & _CLOCK_DOUBTFUL
            else "reliable"
        )
        time_status = branch(
            "ElecClockTimeStatus", leaf("TimeStatus", label), TimeStatusCode=str(status)
        )
    device_time = cosem.optional_leaf("DeviceTime", moment)
    return done(reading, device_time, electricity(time_status))


def _ecs27(source: Source) -> Reading:
    # 0-0:94.44.0.3 disable supply on load limit (boolean), 0-0:94.44.42 load limit
    # counter (value, scaler/unit), limiter 0-0:17.0.0 threshold (4), minimum over (6)
    # and under (7) threshold durations.
    values, reading = cosem.read(source)
    disable = values.get(0)
    state = None
    if isinstance(disable, bool):
        state = leaf("LoadLimitSupplyState", "Disable" if disable else "Unchanged")
    return done(
        reading,
        cosem.optional_leaf("LoadLimitCounterValue", integer(values.get(1), "counter")),
        cosem.optional_leaf("LoadLimitPowerThreshold", integer(values.get(3), "threshold")),
        cosem.optional_leaf("LoadLimitPeriod", integer(values.get(4), "period")),
        cosem.optional_leaf("LoadLimitRestorationPeriod", integer(values.get(5), "restoration")),
        state,
    )


_C = MESSAGE_CODES
ECS_REGISTER_LAYOUTS: dict[int, Reader] = {
    _C["ECS17a"]: _ecs17a,
    _C["ECS17b"]: _ecs17b,
    _C["ECS17c"]: _ecs17c,
    _C["ECS17d"]: _ecs17d,
    _C["ECS17e"]: _ecs17e,
    _C["ECS18a"]: _ecs18a,
    _C["ECS18b"]: _ecs18b,
    _C["ECS27"]: _ecs27,
    _C["ECS45"]: _ecs45,
    _C["ECS52"]: _ecs52,
    _C["ECS70"]: _ecs70,
    _C["ECS82"]: _ecs82,
}
