"""Electricity meter and hub logs: profiles, daily reads, billing amounts, event and
security logs, voltage data, the CHF's device logs (DLMS/COSEM, sans-IO).

Log buffers come as compact arrays of (UTC seconds since 2000-01-01, values...); the
oldest entry first, as the device keeps them.
"""

from __future__ import annotations

from parse_correlate.decode import cosem
from parse_correlate.decode.alerts import describe_event
from parse_correlate.decode.cosem import (
    Values,
    date_time,
    done,
    eui,
    integer,
    log_pairs,
    log_time,
)
from parse_correlate.decode.errors import DecodeError
from parse_correlate.decode.nodes import Node, branch, leaf
from parse_correlate.decode.readers import Reader, Reading, Source
from parse_correlate.gbcs_codes import MESSAGE_CODES

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
            return done(reading)
        case (list() as entries,):
            pass
        case other:
            raise DecodeError(f"unexpected daily consumption layout {other!r:.80}")
    return done(reading, branch("Electricity", *_log_entries("LogEntry", entries, 731)))


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
    return done(reading, branch("Electricity", _voltage_data(values, 0)))


def _ecs23b(source: Source) -> Reading:
    # The same six items for phases 1, 2 and 3 (OBIS C = 32, 52, 72).
    values, reading = cosem.read(source)
    phases = []
    for phase in range(3):
        data = _voltage_data(values, phase * 6)
        data = data._replace(name="VoltageOperationalData")
        phases.append(branch("PhaseVoltageOperationalData", data, leaf("Phase", phase + 1)))
    return done(reading, branch("Electricity", branch("PolyPhaseESME", *phases)))


MAX_LOG_ENTRIES = 100  # the schema's LogEntry limit


def _event_log(source: Source) -> Reading:
    # A profile of 0-0:99.98.x (event, security or power event log) read by range:
    # (UTC seconds, event code[, other information]) per entry, oldest first.
    values, reading = cosem.read(source)
    entries = values.get(0)
    if entries is None:
        return done(reading, branch("Log"))
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
    return done(reading, branch("Log", *nodes))


def _amount_log(wrapper: str, limit: int) -> Reader:
    # 0-0:98.1.4 payment-based debt payments, 0-0:98.1.5 prepayment credits: (time, amount).
    def reader(source: Source) -> Reading:
        values, reading = cosem.read(source)
        entries = values.get(0)
        if entries is None:
            return done(reading)
        rows = log_pairs(entries, wrapper)[-limit:]
        nodes = [
            branch("LogEntry", leaf("Amount", numbers[0]), leaf("Timestamp", log_time(seconds)))
            for seconds, numbers in rows
        ]
        return done(reading, branch(wrapper, *nodes))

    return reader


def _ecs21c(source: Source) -> Reading:
    # 0-0:98.1.10 export daily read log: (time, active export register).
    values, reading = cosem.read(source)
    entries = values.get(0)
    rows = log_pairs(entries, "export daily read log")[-31:] if entries is not None else []
    return done(reading, *(
        branch("LogEntry", leaf("ActiveExportRegisterValue", numbers[0]),
               leaf("TimeStamp", log_time(seconds)))
        for seconds, numbers in rows
    ))  # fmt: skip


def _ecs22c(source: Source) -> Reading:
    # 0-0:99.1.2 reactive import profile: (time, reactive energy imported).
    values, reading = cosem.read(source)
    entries = values.get(0)
    rows = log_pairs(entries, "reactive import profile") if entries is not None else []
    return done(reading, *(
        branch("LogEntry", leaf("ReactiveEnergyImportedValue", numbers[0]),
               leaf("Timestamp", log_time(seconds)))
        for seconds, numbers in rows
    ))  # fmt: skip


def _ecs22a(source: Source) -> Reading:
    # 0-0:99.1.1 export profile: (time, active energy exported, reactive energy exported).
    values, reading = cosem.read(source)
    entries = values.get(0)
    rows = log_pairs(entries, "export profile") if entries is not None else []
    nodes = []
    for seconds, numbers in rows:
        if len(numbers) != 2:
            raise DecodeError("export profile entry is not (time, active, reactive)")
        nodes.append(branch("LogEntry", leaf("ActiveEnergyExportedValue", numbers[0]),
                            leaf("ReactiveEnergyExportedValue", numbers[1]),
                            leaf("Timestamp", log_time(seconds))))  # fmt: skip
    return done(reading, *nodes)


def _ecs22b(source: Source) -> Reading:
    # Protected 0-0:43.2.7 active import profile: (time, primary [, secondary element]).
    values, reading = cosem.read(source)
    match values.plain(0):
        case None:
            return done(reading)
        case (list() as entries,):
            pass
        case other:
            raise DecodeError(f"unexpected active import profile {other!r:.80}")
    nodes = []
    for seconds, numbers in log_pairs(entries, "active import profile"):
        if len(numbers) > 2:
            raise DecodeError("active import profile entry has more than two values")
        nodes.append(branch(
            "LogEntry", leaf("Timestamp", log_time(seconds)),
            branch("Electricity", leaf("PrimaryValue", numbers[0]),
                   leaf("SecondaryValue", numbers[1]) if len(numbers) > 1 else None),
        ))  # fmt: skip
    return done(reading, *nodes)


def _chf_device_log(source: Source) -> Reading:
    # 0-0:30.3.0 (CHF device log) attribute 4: per device (EUI-64, ..., the date-time of
    # its last communication at position 8, ...).
    values, reading = cosem.read(source)
    entries = values.get(0)
    if entries is None:
        return done(reading, branch("CHFDeviceLog"))
    if not isinstance(entries, list):
        raise DecodeError("CHF device log is not a list")
    nodes = []
    for entry in entries[:16]:
        if not isinstance(entry, tuple) or len(entry) < 9:
            raise DecodeError("CHF device log entry is too short")
        nodes.append(branch(
            "CHFDeviceLogEntry", leaf("DeviceID", eui(entry[0])),
            cosem.optional_leaf("LastCommunicationsDateTime", date_time(entry[8], "last contact")),
        ))  # fmt: skip
    return done(reading, branch("CHFDeviceLog", *nodes))


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
                groups += [branch(name, leaf("DeviceID", eui(d[0]))) for d in devices[:16]
                           if isinstance(d, tuple) and d]  # fmt: skip
            case other:
                raise DecodeError(f"unexpected connected device log {other!r:.80}")
    return done(reading, branch("CHFConnectedDeviceLog", *groups))


_C = MESSAGE_CODES
ECS_LOG_LAYOUTS: dict[int, Reader] = {
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
    _C["ECS35a"]: _event_log,
    _C["ECS35b"]: _event_log,
    _C["ECS35c"]: _event_log,
    _C["ECS35d"]: _event_log,
    _C["ECS35e"]: _event_log,
    _C["ECS66"]: _ecs66,
}
