"""Electricity meter configuration reads: voltage settings, randomisation, billing
calendar, identity, power thresholds, MPANs, payment mode, auxiliary load switches
(DLMS/COSEM, sans-IO).
"""

from __future__ import annotations

from parse_correlate.decode import cosem
from parse_correlate.decode.cosem import (
    Values,
    done,
    electricity,
    eui,
    integer,
    log_pairs,
    log_time,
    octets,
    text,
)
from parse_correlate.decode.errors import DecodeError
from parse_correlate.decode.nodes import Node, branch, leaf
from parse_correlate.decode.readers import Reader, Reading, Source
from parse_correlate.gbcs_codes import MESSAGE_CODES

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
    return done(
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
    return done(reading, *phases, _rms_settings(values))


def _ecs26c(source: Source) -> Reading:
    # 0-0:94.44.0.0 randomised offset, .0.2 its number, .0.1 the limit (which ECS38 sets).
    values, reading = cosem.read(source)
    return done(
        reading,
        cosem.optional_leaf("RandomisedOffset", integer(values.get(0), "offset")),
        cosem.optional_leaf("RandomisedOffsetNumber", integer(values.get(1), "number")),
        cosem.optional_leaf("RandomisedOffsetLimit", integer(values.get(2), "limit")),
    )


_ANY = 0xFF  # a DLMS date field 'not specified': every day, month...
_LAST_BILLING_DAY = 28  # the MMC schema's BillingCalendarDayOfMonth limit


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
    if not (day == _ANY or 1 <= day <= _LAST_BILLING_DAY) or not (
        weekday == _ANY or 1 <= weekday <= 7
    ):
        raise DecodeError(f"billing calendar date {first.hex()} is out of range")
    if any(not 1 <= m <= 12 for m in months if m != _ANY):
        raise DecodeError("billing calendar month is out of range")
    if day == _ANY and weekday == _ANY:
        period = leaf("Daily", "")
    elif day == _ANY:
        period = leaf("Weekly", weekday)
    elif month == _ANY:
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
    return done(reading, _billing_calendar(entries) if entries is not None else None)


def _identity(values: Values, names: tuple[str, ...]) -> tuple[Node | None, ...]:
    """0-0:96.1.1 device id, 96.1.2 meter variant, 96.1.4 model, 96.1.6 manufacturer,
    0-0:94.44.0.4 supply tamper state: each present or not, as the use case asks."""
    found = dict(zip(names, (values.get(i) for i in range(len(names))), strict=True))
    device = octets(found.get("device"), "device identifier")
    model = text(found.get("model"), "model type")
    manufacturer = text(found.get("manufacturer"), "manufacturer")
    variant = text(found.get("variant"), "meter variant")
    tamper = found.get("tamper")
    commodity = None
    if "variant" in names or "tamper" in names:
        commodity = electricity(
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
        commodity,
    )


def _identity_reader(*names: str) -> Reader:
    def reader(source: Source) -> Reading:
        values, reading = cosem.read(source)
        return done(reading, *_identity(values, names))

    return reader


def _ecs26f(source: Source) -> Reading:
    # 0-0:16.0.0 register monitor thresholds: (low/medium, medium/high) power thresholds.
    values, reading = cosem.read(source)
    match values.get(0):
        case None:
            return done(reading)
        case [int() as low, int() as high]:
            return done(
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
    return done(
        reading,
        electricity(
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
            return done(reading)
        case (int() as mode, int()):
            names = {1: "Credit", 2: "Prepayment"}
            if mode not in names:
                raise DecodeError(f"payment mode {mode} is neither credit nor prepayment")
            return done(reading, leaf("PaymentMode", names[mode]))
    raise DecodeError("account mode and status is not (mode, status)")


_AUXILIARY_CONTROLLERS = 5


def _ecs61c(source: Source) -> Reading:
    # 0-0:94.44.7 boost function availability, the boost event log 0-0:99.98.20
    # (start, end) by range, boost function control values 0-0:94.44.6.1 to .5.
    values, reading = cosem.read(source)
    events = []
    log = values.get(1)
    if log is not None:
        for seconds, numbers in log_pairs(log, "boost event log")[-25:]:
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
    return done(
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
    return done(reading, *(
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
    return done(reading, *nodes)


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
                    else leaf("HCALCS", eui(identity)))  # fmt: skip
        state = values.get(12 + position)
        switches.append(branch(
            "AuxiliaryLoadControlSwitch",
            cosem.optional_leaf("Description", descriptions.get(number)),
            branch("TypeAndIdentifier", kind) if kind is not None else None,
            leaf("State", state) if isinstance(state, bool) else None,
            Index=str(number),
        ))  # fmt: skip
    return done(reading, *switches)


_C = MESSAGE_CODES
ECS_CONFIG_LAYOUTS: dict[int, Reader] = {
    _C["ECS26b"]: _ecs26b,
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
    _C["ECS61a"]: _ecs61a,
    _C["ECS61c"]: _ecs61c,
    _C["ECS61d"]: _ecs61d,
    _C["ECS61e"]: _ecs61e,
}
