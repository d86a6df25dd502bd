"""Electricity meter (and hub) DLMS/COSEM reads -> their MMC elements (sans-IO).

Each layout reads the access-response in the order the use case's command asks for its
COSEM attributes (GBCS use-case definitions; the OBIS code of each position is noted),
and writes the MMC element's children in schema order. A failed attribute is left out;
MessageSuccess says whether every attribute came back.
"""

from __future__ import annotations

from parse_correlate.decode import cosem
from parse_correlate.decode.alerts import describe_event
from parse_correlate.decode.cosem import (
    Values,
    date_time,
    integer,
    log_time,
    octets,
    register,
    text,
)
from parse_correlate.decode.errors import DecodeError
from parse_correlate.decode.nodes import Node, branch, leaf
from parse_correlate.decode.readers import Reader, Reading, Source
from parse_correlate.decode.usecases import USE_CASES_BY_CODE
from parse_correlate.gbcs_codes import MESSAGE_CODES

_CLOCK_RELIABLE, _CLOCK_INVALID, _CLOCK_DOUBTFUL = 0, 0x01, 0x02


def _done(reading: Reading, *content: Node | None) -> Reading:
    return Reading(reading.success, tuple(c for c in content if c is not None), reading.debug)


def _electricity(*children: Node | None) -> Node | None:
    present = [child for child in children if child is not None]
    return branch("Electricity", *present) if present else None


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
    return _done(reading, active, reactive)


def _ecs17b(source: Source) -> Reading:
    # Protected 0-0:43.2.8: (active import, scaler/unit, reactive import, scaler/unit
    # [, secondary active import]).
    values, reading = cosem.read(source)
    match values.plain(0):
        case None:
            return _done(reading, _electricity())
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
    electricity = _electricity(imported, reactive_register, secondary)
    return _done(reading, electricity or branch("Electricity"))


def _ecs17c(source: Source) -> Reading:
    # 0-0:94.44.34.20: (active power import, scaler/unit (W), primary element's power).
    values, reading = cosem.read(source)
    match values.get(0):
        case None:
            return _done(reading)
        case (int() as power, scaler_unit, int() as primary):
            pass
        case other:
            raise DecodeError(f"unexpected active power layout {other!r:.200}")
    watts = cosem.scaled(power, scaler_unit, (cosem.UNIT_W,), "active power import")
    return _done(
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
            return _done(reading, _electricity())
        case ((list() as primary, *secondary),) if len(secondary) <= 1:
            pass
        case other:
            raise DecodeError(f"unexpected TOU register layout {other!r:.200}")
    collection = branch(
        "TariffTOURegisterCollection",
        *_tou_values("TOUPrimaryRegisterValue", primary, 48),
        *(_tou_values("TOUSecondRegisterValue", secondary[0], 4) if secondary else ()),
    )
    return _done(reading, branch("Electricity", collection))


def _ecs17e(source: Source) -> Reading:
    # Protected 0-0:43.2.10: the TOU-with-blocks register matrix, 8 TOU rates for each of
    # 4 blocks, then the block counter matrix in the same order.
    values, reading = cosem.read(source)
    match values.plain(0):
        case None:
            return _done(reading)
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
    return _done(reading, branch("TariffBlockTOURegisterCollection", *blocks))


def _ecs82(source: Source) -> Reading:
    # 0-0:19.10.0 meter balance.
    values, reading = cosem.read(source)
    return _done(reading, cosem.optional_leaf("MeterBalance", integer(values.get(0), "balance")))


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
    return _done(
        reading,
        _max_demand("MaxDemandConfigurableTimeActivePowerImport", values, 5, 7, 1),
        _max_demand("MaxDemandActiveEnergyImport", values, 2, 4, 0),
        period,
    )


def _ecs18a(source: Source) -> Reading:
    # 0-0:94.44.5.2 last reset, 1-0:2.6.0 MD active export (value, scaler/unit, capture).
    values, reading = cosem.read(source)
    return _done(reading, _max_demand("MaxDemandActiveEnergyExport", values, 1, 3, 0))


# ---- logs --------------------------------------------------------------------------------


def _log_entries(name: str, entries: object, limit: int) -> list[Node]:
    if not isinstance(entries, list) or len(entries) > limit:
        raise DecodeError(f"{name} log is not a list of at most {limit} entries")
    nodes = []
    for entry in entries:
        match entry:
            case (int() as seconds, int() as value):
                nodes.append(
                    branch(name, leaf("Value", value), leaf("Timestamp", log_time(seconds)))
                )
            case _:
                raise DecodeError(f"{name} entry {entry!r:.80} is not (time, value)")
    return nodes


def _ecs66(source: Source) -> Reading:
    # Protected 0-0:43.2.4: the daily consumption log, (UTC seconds, Wh) per day.
    values, reading = cosem.read(source)
    match values.plain(0):
        case None:
            return _done(reading)
        case (list() as entries,):
            pass
        case other:
            raise DecodeError(f"unexpected daily consumption layout {other!r:.80}")
    return _done(reading, branch("Electricity", *_log_entries("LogEntry", entries, 731)))


def _voltage_data(values: Values, first: int) -> Node:
    # For one phase: x.32.0.4 under-voltage counter (value, scaler/unit), x.36.0.4
    # over-voltage counter, then the average RMS voltage profile x.24.0 and its period.
    def counter(name: str, index: int) -> Node | None:
        number = integer(values.get(index), name)
        return None if number is None else branch(name, leaf("Value", number))

    profile = values.get(first + 4)
    period = integer(values.get(first + 5), "measurement period")
    log = None
    if profile is not None or period is not None:
        log = branch(
            "AvgRMSVoltageProfileDataLog",
            *(_log_entries("LogEntry", profile, 4320) if profile is not None else ()),
            cosem.optional_leaf("MeasurementPeriod", period),
        )
    return branch(
        "VoltageOperationalData" if first else "SinglePhaseESME",
        counter("AvgRMSOverVoltageCounter", first + 2),
        counter("AvgRMSUnderVoltageCounter", first),
        log,
    )


def _ecs23(source: Source) -> Reading:
    values, reading = cosem.read(source)
    return _done(reading, branch("Electricity", _voltage_data(values, 0)))


def _ecs23b(source: Source) -> Reading:
    # The same six items for phases 1, 2 and 3 (OBIS C = 32, 52, 72).
    values, reading = cosem.read(source)
    phases = []
    for phase in range(3):
        data = _voltage_data(values, phase * 6)
        data = data._replace(name="VoltageOperationalData")
        phases.append(branch("PhaseVoltageOperationalData", data, leaf("Phase", phase + 1)))
    return _done(reading, branch("Electricity", branch("PolyPhaseESME", *phases)))


# ---- configuration -----------------------------------------------------------------------


def _rms_settings(values: Values) -> Node:
    # Limiters 0-0:17.0.1 to .4: extreme over, extreme under, sag and swell voltage,
    # each (threshold, period).
    names = ("RMSExtremeOverVoltage", "RMSExtremeUnderVoltage", "RMSVoltageSag", "RMSVoltageSwell")
    children: list[Node | None] = []
    for position, name in enumerate(names):
        threshold = integer(values.get(position * 2), name)
        period = integer(values.get(position * 2 + 1), name)
        children.append(cosem.optional_leaf(f"{name}MeasurementPeriod", period))
        children.append(cosem.optional_leaf(f"{name}Threshold", threshold))
    return branch("RMSVoltageSettings", *children)


def _average_settings(name: str, values: Values, over: int, under: int) -> Node:
    return branch(
        name,
        cosem.optional_leaf("AverageRMSOverVoltageThreshold", integer(values.get(over), "over")),
        cosem.optional_leaf("AverageRMSUnderVoltageThreshold", integer(values.get(under), "under")),
    )


def _ecs26b(source: Source) -> Reading:
    # Then 1-0:32.35.0.4 over- and 1-0:32.31.0.4 under-voltage thresholds.
    values, reading = cosem.read(source)
    return _done(
        reading,
        _average_settings("SinglePhaseVoltageSettings", values, 8, 9),
        _rms_settings(values),
    )


def _ecs26k(source: Source) -> Reading:
    # Then per phase: 32.35/32.31 (phase 1), 52.31/52.35 (2), 72.31/72.35 (3).
    values, reading = cosem.read(source)
    phases = [
        branch(
            "PolyPhaseVoltageSettings",
            leaf("Phase", phase),
            _average_settings("PhaseVoltageSettings", values, over, under),
        )
        for phase, over, under in ((1, 8, 9), (2, 11, 10), (3, 13, 12))
    ]
    return _done(reading, *phases, _rms_settings(values))


def _ecs26c(source: Source) -> Reading:
    # 0-0:94.44.0.0 randomised offset, .0.2 its number, .0.1 the limit (which ECS38 sets).
    values, reading = cosem.read(source)
    return _done(
        reading,
        cosem.optional_leaf("RandomisedOffset", integer(values.get(0), "offset")),
        cosem.optional_leaf("RandomisedOffsetNumber", integer(values.get(1), "number")),
        cosem.optional_leaf("RandomisedOffsetLimit", integer(values.get(2), "limit")),
    )


def _billing_calendar(entries: object) -> Node:
    """Single-action schedule 0-0:15.0.0 execution times -> ElectricityBillingCalendar.
    Dates are DLMS dates with wildcards (0xFF): every day, a weekday, a day of the month,
    or a day in every third, sixth or twelfth month."""
    if not isinstance(entries, list) or not entries:
        raise DecodeError("billing calendar is not a list of execution times")
    parsed = []
    for entry in entries:
        match entry:
            case (bytes() as time, bytes() as date) if len(date) == 5:
                parsed.append((cosem.time_of_day(time, "billing time"), date))
            case _:
                raise DecodeError(f"billing calendar entry {entry!r:.80} is not (time, date)")
    billing_time, first = parsed[0]
    month, day, weekday = first[2], first[3], first[4]
    months = sorted(date[2] for _, date in parsed)
    if day == 0xFF and weekday == 0xFF:
        period = leaf("Daily", "")
    elif day == 0xFF:
        period = leaf("Weekly", weekday)
    elif month == 0xFF:
        period = leaf("Monthly", day)
    else:
        name = {4: "Quarterly", 2: "SixMonthly", 1: "Yearly"}.get(len(parsed))
        if name is None:
            raise DecodeError(f"billing calendar of {len(parsed)} dates has no MMC periodicity")
        period = branch(name, leaf("DayOfMonth", day), leaf("BillingPeriodStartMonth", months[0]))
    return branch(
        "BillingCalendar",
        branch("ElectricityBillingCalendar", leaf("BillingTime", str(billing_time)), period),
    )


def _ecs26d(source: Source) -> Reading:
    values, reading = cosem.read(source)
    entries = values.get(0)
    return _done(reading, _billing_calendar(entries) if entries is not None else None)


def _identity(values: Values, names: tuple[str, ...]) -> tuple[Node | None, ...]:
    """0-0:96.1.1 device id, 96.1.2 meter variant, 96.1.4 model, 96.1.6 manufacturer,
    0-0:94.44.0.4 supply tamper state: each present or not, as the use case asks."""
    found = dict(zip(names, (values.get(i) for i in range(len(names))), strict=True))
    device = octets(found.get("device"), "device identifier")
    model = text(found.get("model"), "model type")
    manufacturer = text(found.get("manufacturer"), "manufacturer")
    variant = text(found.get("variant"), "meter variant")
    tamper = found.get("tamper")
    electricity = None
    if "variant" in names or "tamper" in names:
        electricity = _electricity(
            leaf("SupplyTamperState", "Locked" if tamper else "Unchanged")
            if tamper is not None
            else None,
            cosem.optional_leaf("MeterVariant", variant),
        )
    return (
        leaf("DeviceIdentifier", "-".join(f"{b:02X}" for b in device)) if device else None,
        cosem.optional_leaf("ModelType", model.strip() if model is not None else None),
        cosem.optional_leaf(
            "ManufacturerIdentifier", manufacturer.strip() if manufacturer is not None else None
        ),
        electricity,
    )


def _identity_reader(*names: str) -> Reader:
    def reader(source: Source) -> Reading:
        values, reading = cosem.read(source)
        return _done(reading, *_identity(values, names))

    return reader


def _ecs26f(source: Source) -> Reading:
    # 0-0:16.0.0 register monitor thresholds: (low/medium, medium/high) power thresholds.
    values, reading = cosem.read(source)
    match values.get(0):
        case None:
            return _done(reading)
        case [int() as low, int() as high]:
            return _done(
                reading,
                leaf("LowMediumPowerThreshold", low),
                leaf("MediumHighPowerThreshold", high),
            )
    raise DecodeError("power thresholds are not two integers")


def _ecs40(source: Source) -> Reading:
    # 0-0:94.44.34.11 import MPAN (a twin element meter appends the secondary's 13
    # characters), 1-0:0.0.2 export MPAN.
    values, reading = cosem.read(source)
    imports = text(values.get(0), "import MPAN")
    export = text(values.get(1), "export MPAN")
    primary = secondary = None
    if imports is not None:
        primary, secondary = imports[:13], imports[13:] or None
    return _done(
        reading,
        _electricity(
            cosem.optional_leaf("ImportMPAN", primary),
            cosem.optional_leaf("SecondaryImportMPAN", secondary),
            cosem.optional_leaf("ExportMPAN", export),
        ),
    )


def _ecs26j(source: Source) -> Reading:
    # 0-0:19.0.0 account attribute 2: (payment mode: 1 credit, 2 prepayment, status).
    values, reading = cosem.read(source)
    match values.get(0):
        case None:
            return _done(reading)
        case (int() as mode, int()):
            names = {1: "Credit", 2: "Prepayment"}
            if mode not in names:
                raise DecodeError(f"payment mode {mode} is neither credit nor prepayment")
            return _done(reading, leaf("PaymentMode", names[mode]))
    raise DecodeError("account mode and status is not (mode, status)")


def _ecs45(source: Source) -> Reading:
    # 0-0:96.3.10 disconnect control, control_state: 0 disconnected, 1 connected,
    # 2 ready for reconnection (armed).
    values, reading = cosem.read(source)
    state = integer(values.get(0), "supply state")
    if state is None:
        return _done(reading)
    names = {0: "Disabled", 1: "Enabled", 2: "Armed"}
    if state not in names:
        raise DecodeError(f"supply state {state} is not 0, 1 or 2")
    return _done(reading, leaf("SupplyState", names[state]))


def _ecs52(source: Source) -> Reading:
    # 0-0:0.2.1 active firmware identifier (octet string), written as hex.
    values, reading = cosem.read(source)
    version = octets(values.get(0), "firmware version")
    return _done(reading, leaf("FirmwareVersion", version) if version is not None else None)


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
    return _done(reading, device_time, _electricity(time_status))


def _ecs70_by_srv(source: Source) -> Reading:
    return _ecs70(source)


def _ecs27(source: Source) -> Reading:
    # 0-0:94.44.0.3 disable supply on load limit (boolean), 0-0:94.44.42 load limit
    # counter (value, scaler/unit), limiter 0-0:17.0.0 threshold (4), minimum over (6)
    # and under (7) threshold durations.
    values, reading = cosem.read(source)
    disable = values.get(0)
    state = None
    if isinstance(disable, bool):
        state = leaf("LoadLimitSupplyState", "Disable" if disable else "Unchanged")
    return _done(
        reading,
        cosem.optional_leaf("LoadLimitCounterValue", integer(values.get(1), "counter")),
        cosem.optional_leaf("LoadLimitPowerThreshold", integer(values.get(3), "threshold")),
        cosem.optional_leaf("LoadLimitPeriod", integer(values.get(4), "period")),
        cosem.optional_leaf("LoadLimitRestorationPeriod", integer(values.get(5), "restoration")),
        state,
    )


MAX_LOG_ENTRIES = 100  # the schema's LogEntry limit


def _event_log(source: Source) -> Reading:
    # A profile of 0-0:99.98.x (event, security or power event log) read by range:
    # (UTC seconds, event code[, other information]) per entry, oldest first.
    values, reading = cosem.read(source)
    entries = values.get(0)
    if entries is None:
        return _done(reading, branch("Log"))
    if not isinstance(entries, list):
        raise DecodeError("event log is not a list of entries")
    nodes = []
    for entry in entries[-MAX_LOG_ENTRIES:]:
        match entry:
            case (int() as seconds, int() as code, *rest) if len(rest) <= 1:
                pass
            case _:
                raise DecodeError(f"event log entry {entry!r:.80} is not (time, code, ...)")
        other = rest[0] if rest and isinstance(rest[0], bytes) and rest[0] else None
        nodes.append(
            branch(
                "LogEntry",
                leaf("Timestamp", log_time(seconds)),
                leaf("LogCode", code.to_bytes(2, "big")),
                cosem.optional_leaf("LogMeaning", describe_event(code)),
                cosem.optional_leaf("OtherInformation", other),
            )
        )
    return _done(reading, branch("Log", *nodes))


def _pairs(entries: object, what: str) -> list[tuple[int, tuple[int, ...]]]:
    """A log buffer of (UTC seconds, value...) entries, each value an integer."""
    if not isinstance(entries, list):
        raise DecodeError(f"{what} is not a list of entries")
    rows = []
    for entry in entries:
        match entry:
            case (int() as seconds, *numbers) if numbers and all(
                isinstance(n, int) and not isinstance(n, bool) for n in numbers
            ):
                rows.append((seconds, tuple(n for n in numbers if isinstance(n, int))))
            case _:
                raise DecodeError(f"{what} entry {entry!r:.80} is not (time, values)")
    return rows


def _amount_log(wrapper: str, limit: int) -> Reader:
    # 0-0:98.1.4 payment-based debt payments, 0-0:98.1.5 prepayment credits: (time, amount).
    def reader(source: Source) -> Reading:
        values, reading = cosem.read(source)
        entries = values.get(0)
        if entries is None:
            return _done(reading)
        rows = _pairs(entries, wrapper)[-limit:]
        nodes = [
            branch("LogEntry", leaf("Amount", numbers[0]), leaf("Timestamp", log_time(seconds)))
            for seconds, numbers in rows
        ]
        return _done(reading, branch(wrapper, *nodes))

    return reader


def _ecs21c(source: Source) -> Reading:
    # 0-0:98.1.10 export daily read log: (time, active export register).
    values, reading = cosem.read(source)
    entries = values.get(0)
    rows = _pairs(entries, "export daily read log")[-31:] if entries is not None else []
    return _done(reading, *(
        branch("LogEntry", leaf("ActiveExportRegisterValue", numbers[0]),
               leaf("TimeStamp", log_time(seconds)))
        for seconds, numbers in rows
    ))  # fmt: skip


def _ecs22c(source: Source) -> Reading:
    # 0-0:99.1.2 reactive import profile: (time, reactive energy imported).
    values, reading = cosem.read(source)
    entries = values.get(0)
    rows = _pairs(entries, "reactive import profile") if entries is not None else []
    return _done(reading, *(
        branch("LogEntry", leaf("ReactiveEnergyImportedValue", numbers[0]),
               leaf("Timestamp", log_time(seconds)))
        for seconds, numbers in rows
    ))  # fmt: skip


def _ecs22a(source: Source) -> Reading:
    # 0-0:99.1.1 export profile: (time, active energy exported, reactive energy exported).
    values, reading = cosem.read(source)
    entries = values.get(0)
    rows = _pairs(entries, "export profile") if entries is not None else []
    nodes = []
    for seconds, numbers in rows:
        if len(numbers) != 2:
            raise DecodeError("export profile entry is not (time, active, reactive)")
        nodes.append(branch("LogEntry", leaf("ActiveEnergyExportedValue", numbers[0]),
                            leaf("ReactiveEnergyExportedValue", numbers[1]),
                            leaf("Timestamp", log_time(seconds))))  # fmt: skip
    return _done(reading, *nodes)


def _ecs22b(source: Source) -> Reading:
    # Protected 0-0:43.2.7 active import profile: (time, primary [, secondary element]).
    values, reading = cosem.read(source)
    match values.plain(0):
        case None:
            return _done(reading)
        case (list() as entries,):
            pass
        case other:
            raise DecodeError(f"unexpected active import profile {other!r:.80}")
    nodes = []
    for seconds, numbers in _pairs(entries, "active import profile"):
        if len(numbers) > 2:
            raise DecodeError("active import profile entry has more than two values")
        nodes.append(branch(
            "LogEntry", leaf("Timestamp", log_time(seconds)),
            branch("Electricity", leaf("PrimaryValue", numbers[0]),
                   leaf("SecondaryValue", numbers[1]) if len(numbers) > 1 else None),
        ))  # fmt: skip
    return _done(reading, *nodes)


def _eui(raw: object) -> str:
    if not isinstance(raw, bytes) or len(raw) != 8:
        raise DecodeError("a device id is 8 bytes")
    return "-".join(f"{b:02X}" for b in raw)


def _chf_device_log(source: Source) -> Reading:
    # 0-0:30.3.0 (CHF device log) attribute 4: per device (EUI-64, ..., the date-time of
    # its last communication at position 8, ...).
    values, reading = cosem.read(source)
    entries = values.get(0)
    if entries is None:
        return _done(reading, branch("CHFDeviceLog"))
    if not isinstance(entries, list):
        raise DecodeError("CHF device log is not a list")
    nodes = []
    for entry in entries[:16]:
        if not isinstance(entry, tuple) or len(entry) < 9:
            raise DecodeError("CHF device log entry is too short")
        nodes.append(branch(
            "CHFDeviceLogEntry", leaf("DeviceID", _eui(entry[0])),
            cosem.optional_leaf("LastCommunicationsDateTime", date_time(entry[8], "last contact")),
        ))  # fmt: skip
    return _done(reading, branch("CHFDeviceLog", *nodes))


def _chf_connected_log(source: Source) -> Reading:
    # Methods on 0-0:30.3.0 (current) and 0-0:30.3.1 (historic) connected device logs:
    # (date-time, nonce, [(EUI-64, security details)]).
    values, reading = cosem.read(source)
    groups = []
    for index, name in ((0, "CHFCurrentConnectedDeviceLogEntry"),
                        (1, "CHFHistoricConnectedDeviceLogEntry")):  # fmt: skip
        match values.get(index):
            case None:
                continue
            case (_, _, list() as devices):
                groups += [branch(name, leaf("DeviceID", _eui(d[0]))) for d in devices[:16]
                           if isinstance(d, tuple) and d]  # fmt: skip
            case other:
                raise DecodeError(f"unexpected connected device log {other!r:.80}")
    return _done(reading, branch("CHFConnectedDeviceLog", *groups))


_AUXILIARY_CONTROLLERS = 5


def _ecs61c(source: Source) -> Reading:
    # 0-0:94.44.7 boost function availability, the boost event log 0-0:99.98.20
    # (start, end) by range, boost function control values 0-0:94.44.6.1 to .5.
    values, reading = cosem.read(source)
    events = []
    log = values.get(1)
    if log is not None:
        for seconds, numbers in _pairs(log, "boost event log")[-25:]:
            if len(numbers) != 1:
                raise DecodeError("boost event log entry is not (start, end)")
            events.append(branch("EventLogEntry", leaf("BoostEnd", log_time(numbers[0])),
                                 leaf("BoostStart", log_time(seconds))))  # fmt: skip
    controls = []
    for position in range(_AUXILIARY_CONTROLLERS):
        value = values.get(2 + position)
        if isinstance(value, bool):
            controls.append(leaf(f"BoostFunctionControl{position + 1}Value", value))
    available = values.get(0)
    return _done(
        reading,
        *events,
        leaf("BoostFunctionAvailability", available) if isinstance(available, bool) else None,
        *controls,
    )


def _descriptions(values: Values, first: int) -> list[tuple[int, str]]:
    # 0-0:94.44.0.11 to .15: the five auxiliary controllers' descriptions.
    found = []
    for position in range(_AUXILIARY_CONTROLLERS):
        description = text(values.get(first + position), "description")
        if description is not None:
            found.append((position + 1, description))
    return found


def _ecs61d(source: Source) -> Reading:
    values, reading = cosem.read(source)
    return _done(reading, *(
        branch("AuxiliaryControllerDescription", leaf("AuxiliaryControlDescription", d[:22]),
               auxiliaryControllerN=str(n))
        for n, d in _descriptions(values, 0)
    ))  # fmt: skip


def _ecs61e(source: Source) -> Reading:
    # 0-0:94.44.0.31 to .35: each controller's state and associated information (text).
    values, reading = cosem.read(source)
    nodes = []
    for position in range(_AUXILIARY_CONTROLLERS):
        state = text(values.get(5 + position), "state")
        if state is not None:
            nodes.append(branch(
                "AuxiliaryControllerOperationalData",
                branch("AuxiliaryControllerStateAndAssociatedInformation",
                       leaf("StateAndAssociatedInformation", state)),
                auxiliaryControllerN=str(position + 1),
            ))  # fmt: skip
    return _done(reading, *nodes)


def _ecs61a(source: Source) -> Reading:
    # Descriptions (0-0:94.44.0.11 to .15), switch identities (0-0:94.44.0.21 to .25:
    # all zero for a meter's own ALCS, else the HCALCS's EUI-64), then the calendar and
    # schedule, and the switch states 0-n:96.3.10 (n = 1 to 5).
    values, reading = cosem.read(source)
    descriptions = dict(_descriptions(values, 0))
    switches = []
    for position in range(_AUXILIARY_CONTROLLERS):
        number = position + 1
        identity = octets(values.get(5 + position), "switch identity")
        kind = None
        if identity is not None:
            kind = (leaf("ALCS", "") if not any(identity)
                    else leaf("HCALCS", _eui(identity)))  # fmt: skip
        state = values.get(12 + position)
        switches.append(branch(
            "AuxiliaryLoadControlSwitch",
            cosem.optional_leaf("Description", descriptions.get(number)),
            branch("TypeAndIdentifier", kind) if kind is not None else None,
            leaf("State", state) if isinstance(state, bool) else None,
            Index=str(number),
        ))  # fmt: skip
    return _done(reading, *switches)


_C = MESSAGE_CODES
ECS_LAYOUTS: dict[int, Reader] = {
    _C["ECS17a"]: _ecs17a,
    _C["ECS17b"]: _ecs17b,
    _C["ECS17c"]: _ecs17c,
    _C["ECS17d"]: _ecs17d,
    _C["ECS17e"]: _ecs17e,
    _C["ECS18a"]: _ecs18a,
    _C["ECS18b"]: _ecs18b,
    _C["ECS23"]: _ecs23,
    _C["ECS23b"]: _ecs23b,
    _C["ECS20a"]: _amount_log("PaymentBasedDebtRepayment", 10),
    _C["ECS20d"]: _amount_log("PrepaymentCredits", 5),
    _C["ECS21c"]: _ecs21c,
    _C["ECS22a"]: _ecs22a,
    _C["ECS22b"]: _ecs22b,
    _C["ECS22c"]: _ecs22c,
    _C["CCS05CCS04"]: _chf_device_log,
    _C["CCS06"]: _chf_device_log,
    _C["CCS07"]: _chf_connected_log,
    _C["ECS26b"]: _ecs26b,
    _C["ECS27"]: _ecs27,
    _C["ECS35a"]: _event_log,
    _C["ECS35b"]: _event_log,
    _C["ECS35c"]: _event_log,
    _C["ECS35d"]: _event_log,
    _C["ECS35e"]: _event_log,
    _C["ECS26c"]: _ecs26c,
    _C["ECS26d"]: _ecs26d,
    _C["ECS26e"]: _identity_reader("device", "variant", "model", "manufacturer", "tamper"),
    _C["ECS26f"]: _ecs26f,
    _C["ECS26i"]: _identity_reader("device", "model", "manufacturer"),
    _C["ECS26j"]: _ecs26j,
    _C["ECS26k"]: _ecs26k,
    _C["ECS26l"]: _ecs26d,
    _C["ECS26m"]: _identity_reader("variant", "model", "manufacturer", "tamper"),
    _C["ECS26n"]: _identity_reader("model", "manufacturer"),
    _C["ECS40"]: _ecs40,
    _C["ECS45"]: _ecs45,
    _C["ECS52"]: _ecs52,
    _C["ECS61a"]: _ecs61a,
    _C["ECS61c"]: _ecs61c,
    _C["ECS61d"]: _ecs61d,
    _C["ECS61e"]: _ecs61e,
    _C["ECS66"]: _ecs66,
    _C["ECS70"]: _ecs70,
    _C["ECS82"]: _ecs82,
}
assert all(code in USE_CASES_BY_CODE for code in ECS_LAYOUTS)
