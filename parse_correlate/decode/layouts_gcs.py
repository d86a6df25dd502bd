"""Gas meter and gas proxy (GBZ/ZCL) reads -> their MMC elements (sans-IO).

Each GCS response is a GBZ payload: one component per ZCL command or attribute read the
use case defines, in order. Attribute reads are looked up by cluster and attribute id
(ZigBee Smart Energy: Basic 0x0000, Price 0x0700, Metering 0x0702, Prepayment 0x0705),
so a device answering them in another order still reads right. Consumption values are
scaled as the Metering cluster says (multiplier / divisor, unit of measure 0x01 m3).
"""

from __future__ import annotations

from decimal import Decimal

from parse_correlate.decode import gbz
from parse_correlate.decode.alerts import describe_event
from parse_correlate.decode.errors import DecodeError
from parse_correlate.decode.gbz import ZclReader
from parse_correlate.decode.nodes import Node, branch, leaf
from parse_correlate.decode.readers import Reader, Reading, Source, gbz_outcome, gbz_plain
from parse_correlate.gbcs_codes import MESSAGE_CODES

BASIC, PRICE, METERING, PREPAYMENT = 0x0000, 0x0700, 0x0702, 0x0705
UNIT_M3 = 0x01  # ZCL unit of measure: cubic metres, binary
SUMMATION, TIER_SUMMATIONS = 0x0000, (0x0100, 0x0102, 0x0104, 0x0106)
BLOCK_SUMMATIONS = (0x0700, 0x0701, 0x0702, 0x0703)
UNIT_OF_MEASURE, MULTIPLIER, DIVISOR = 0x0300, 0x0301, 0x0302
SUPPLY_STATUS, BATTERY_DAYS, METER_ID, SITE_ID = 0x0014, 0x0205, 0x0206, 0x0307
TAMPER_STATE, DEPLETION_STATE, BILL_TO_DATE = 0x0607, 0x0608, 0x0A00
FLOW_THRESHOLD, FLOW_MULTIPLIER, FLOW_DIVISOR = 0x0B10, 0x0B12, 0x0B13
FLOW_STABILISATION, FLOW_MEASUREMENT = 0x0B14, 0x0B15
PAYMENT_CONTROL, CREDIT_REMAINING, EMERGENCY_CREDIT, ACCUMULATED_DEBT = (
    0x0000,
    0x0001,
    0x0002,
    0x0005,
)
DEBT_1, DEBT_2, DEBT_3 = 0x0211, 0x0221, 0x0231
CONVERSION_FACTOR, CONVERSION_DIGIT, CALORIFIC_VALUE, CALORIFIC_DIGIT = (
    0x0302,
    0x0303,
    0x0304,
    0x0306,
)
MANUFACTURER, MODEL = 0x0004, 0x0005
START_SAMPLING_RESPONSE = 0x0D
PUBLISH_BILLING_PERIOD = 0x09
_PAYMENT_CONTROL_PREPAYMENT = 0x0002  # Payment Control Configuration bit 1
_SUPPLY_STATES = {0: "Disabled", 1: "Armed", 2: "Enabled"}
_MODEL_TYPE_CHARS = 8


class Attributes:
    """Attribute values from every read attributes response, by (cluster, attribute);
    failed reads are absent."""

    def __init__(self, source: Source, components: list[gbz.GbzComponent]) -> None:
        self._values: dict[tuple[int, int], int | bytes] = {}
        for component in components:
            if not component.is_read_attributes_response:
                continue
            for record in gbz.read_attributes_response(gbz_plain(source, component)):
                if record.status == 0 and record.value is not None:
                    self._values[(component.cluster, record.attribute)] = record.value

    def number(self, cluster: int, attribute: int) -> int | None:
        value = self._values.get((cluster, attribute))
        if isinstance(value, bytes):
            raise DecodeError(f"attribute 0x{attribute:04X} is not a number")
        return value

    def octets(self, cluster: int, attribute: int) -> bytes | None:
        value = self._values.get((cluster, attribute))
        if isinstance(value, int):
            raise DecodeError(f"attribute 0x{attribute:04X} is not a string")
        return value


def _read(source: Source) -> tuple[Attributes, list[gbz.GbzComponent], Reading]:
    components, reading = gbz_outcome(source)
    return Attributes(source, components), components, reading


def _done(reading: Reading, *content: Node | None) -> Reading:
    return Reading(reading.success, tuple(c for c in content if c is not None), reading.debug)


def _optional(name: str, value: int | str | Decimal | None) -> Node | None:
    return None if value is None else leaf(name, value)


def _volume(attributes: Attributes, raw: int | None) -> Decimal | None:
    """A Metering summation in m3: times the multiplier, over the divisor."""
    if raw is None:
        return None
    multiplier = attributes.number(METERING, MULTIPLIER)
    divisor = attributes.number(METERING, DIVISOR)
    if multiplier is None or divisor is None or divisor == 0:
        return None  # unscaled it would be a wrong number, not a rough one
    return Decimal(raw) * multiplier / divisor


def _m3(attributes: Attributes) -> bool:
    return attributes.number(METERING, UNIT_OF_MEASURE) == UNIT_M3


def _gcs13a(source: Source) -> Reading:
    attributes, _, reading = _read(source)
    volume = _volume(attributes, attributes.number(METERING, SUMMATION))
    register = None
    if volume is not None:
        register = branch(
            "ConsumptionRegister",
            leaf("Value", volume),
            leaf("Unit", "m3") if _m3(attributes) else None,
        )
    return _done(reading, branch("Gas", register))


def _indexed(name: str, attributes: Attributes, ids: tuple[int, ...]) -> list[Node]:
    nodes = []
    for index, attribute in enumerate(ids, start=1):
        volume = _volume(attributes, attributes.number(METERING, attribute))
        if volume is not None:
            nodes.append(leaf(name, volume, index=str(index)))
    return nodes


def _gcs13c(source: Source) -> Reading:
    attributes, _, reading = _read(source)
    values = _indexed("TOURegisterMatrixValue", attributes, TIER_SUMMATIONS)
    return _done(reading, branch("Gas", branch("TariffTOURegisterMatrix", *values)))


def _gcs13b(source: Source) -> Reading:
    attributes, _, reading = _read(source)
    values = _indexed("TariffBlockCounterValue", attributes, BLOCK_SUMMATIONS)
    return _done(reading, branch("ImportBlockCounters", *values))


def _gcs14(source: Source) -> Reading:
    # Prepayment: emergency credit, accumulated debt, debts 3 (payment-based), 1 and 2
    # (time-based), credit remaining (the meter balance), in the device's currency units.
    attributes, _, reading = _read(source)

    def value(attribute: int) -> int | None:
        return attributes.number(PREPAYMENT, attribute)

    return _done(
        reading,
        _optional("EmergencyCreditBalance", value(EMERGENCY_CREDIT)),
        _optional("AccumulatedDebtRegister", value(ACCUMULATED_DEBT)),
        _optional("PaymentDebtRegister", value(DEBT_3)),
        _optional("TimeDebtRegister1", value(DEBT_1)),
        _optional("TimeDebtRegister2", value(DEBT_2)),
        _optional("MeterBalance", value(CREDIT_REMAINING)),
    )


def _gcs60(source: Source) -> Reading:
    # Metering Bill To Date Delivered (the credit mode balance), Prepayment Credit
    # Remaining (the prepayment mode balance).
    attributes, _, reading = _read(source)
    prepayment = attributes.number(PREPAYMENT, CREDIT_REMAINING)
    return _done(
        reading,
        _optional("MeterBalance", attributes.number(METERING, BILL_TO_DATE)),
        branch("Gas", _optional("MeterBalancePrepaymentMode", prepayment))
        if prepayment is not None
        else None,
    )


def _gcs38(source: Source) -> Reading:
    attributes, _, reading = _read(source)
    version = attributes.octets(METERING, METER_ID)
    return _done(reading, leaf("FirmwareVersion", version) if version is not None else None)


def _gcs33(source: Source) -> Reading:
    attributes, _, reading = _read(source)
    state = attributes.number(METERING, SUPPLY_STATUS)
    battery = attributes.number(METERING, BATTERY_DAYS)
    if state is not None and state not in _SUPPLY_STATES:
        raise DecodeError(f"supply status {state} is not off, armed or on")
    return _done(
        reading,
        leaf("SupplyState", _SUPPLY_STATES[state]) if state is not None else None,
        branch("Gas", leaf("RemainingBatteryCapacity", battery)) if battery is not None else None,
    )


def _gcs46(source: Source) -> Reading:
    attributes, _, reading = _read(source)
    site = attributes.octets(METERING, SITE_ID)
    mprn = site.decode("ascii", errors="replace") if site is not None else None
    return _done(reading, branch("Gas", _optional("MPRN", mprn)))


def _gcs21j(source: Source) -> Reading:
    attributes, _, reading = _read(source)
    control = attributes.number(PREPAYMENT, PAYMENT_CONTROL)
    if control is None:
        return _done(reading)
    mode = "Prepayment" if control & _PAYMENT_CONTROL_PREPAYMENT else "Credit"
    return _done(reading, leaf("PaymentMode", mode))


def _trailing(value: int | None, digits: int | None) -> Decimal | None:
    # ZCL trailing-digit bitmaps keep the count of decimal places in bits 4 to 7.
    if value is None:
        return None
    return Decimal(value).scaleb(-((digits or 0) >> 4))


def _gcs21a(source: Source) -> Reading:
    attributes, _, reading = _read(source)
    threshold = attributes.number(METERING, FLOW_THRESHOLD)
    multiplier = attributes.number(METERING, FLOW_MULTIPLIER)
    divisor = attributes.number(METERING, FLOW_DIVISOR)
    flow = None
    if threshold is not None and multiplier is not None and divisor:
        flow = Decimal(threshold) * multiplier / divisor
    return _done(
        reading,
        _optional("CalorificValue", _trailing(attributes.number(PRICE, CALORIFIC_VALUE),
                                              attributes.number(PRICE, CALORIFIC_DIGIT))),
        _optional("ConversionFactor", _trailing(attributes.number(PRICE, CONVERSION_FACTOR),
                                                attributes.number(PRICE, CONVERSION_DIGIT))),
        _optional("UncontrolledGasFlowRate", flow),
        _optional("FlowStabilisationPeriod", attributes.number(METERING, FLOW_STABILISATION)),
        _optional("FlowMeasurementPeriod", attributes.number(METERING, FLOW_MEASUREMENT)),
    )  # fmt: skip


def _identity(source: Source) -> Reading:
    # Basic: manufacturer name, model identifier (the model type, 8 characters, then
    # the device's EUI-64 where the use case asks for it); Metering: supply tamper and
    # depletion states.
    attributes, _, reading = _read(source)
    manufacturer = attributes.octets(BASIC, MANUFACTURER)
    model = attributes.octets(BASIC, MODEL)
    device = None
    model_type = None
    if model is not None:
        model_type = model[:_MODEL_TYPE_CHARS].decode("ascii", errors="replace").strip()
        if len(model) == _MODEL_TYPE_CHARS + 8:
            device = "-".join(f"{b:02X}" for b in model[_MODEL_TYPE_CHARS:])
    tamper = attributes.number(METERING, TAMPER_STATE)
    depletion = attributes.number(METERING, DEPLETION_STATE)
    name = manufacturer.decode("ascii", errors="replace").strip() if manufacturer else None
    return _done(
        reading,
        _optional("DeviceIdentifier", device),
        _optional("ModelType", model_type),
        _optional("ManufacturerIdentifier", name),
        branch("Gas", _optional("SupplyTamperState", _gas_state(tamper)),
               _optional("SupplyDepletionState", _gas_state(depletion))),
    )  # fmt: skip


def _gas_state(value: int | None) -> str | None:
    # ZSE supply tamper / depletion state: 0 unchanged, 1 locked (supply disabled),
    # 3 ... ; the MMC names the two GBCS uses and passes the others as their number.
    if value is None:
        return None
    return {0: "Unchanged", 1: "Locked"}.get(value)


def _gcs31(source: Source) -> Reading:
    # Start Sampling Response: the sample id (uint16).
    components, reading = gbz_outcome(source)
    for component in components:
        if component.cluster_specific and component.command == START_SAMPLING_RESPONSE:
            sample = int.from_bytes(component.payload[:2], "little")
            return _done(reading, leaf("SampleID", sample))
    return _done(reading)


EVENTS = 0x0709
PUBLISH_EVENT_LOG = 0x01
MAX_LOG_ENTRIES = 100  # the schema's LogEntry limit


def _cs10(source: Source) -> Reading:
    # Events cluster Publish Event Log: total matching events (2), command index (1),
    # total commands (1), log payload control (1), then per event: log id (1), event id
    # (2), event time (ZCL UTC, 4), event data (octet string).
    components, reading = gbz_outcome(source)
    nodes = []
    for component in components:
        if not (component.cluster == EVENTS and component.cluster_specific
                and component.command == PUBLISH_EVENT_LOG):  # fmt: skip
            continue
        reader = ZclReader(gbz_plain(source, component))
        reader.take(5, "event log header")
        while reader.remaining:
            reader.uint(1, "log id")
            code = reader.uint(2, "event id")
            moment = gbz.utc_time(reader.uint(4, "event time"))
            data = reader.octets("event data")
            nodes.append(
                branch(
                    "LogEntry",
                    leaf("Timestamp", moment) if moment is not None else None,
                    leaf("LogCode", code.to_bytes(2, "big")),
                    _optional("LogMeaning", describe_event(code)),
                    leaf("OtherInformation", data) if data else None,
                )
            )
    return _done(reading, branch("Log", *nodes[-MAX_LOG_ENTRIES:]))


_DURATION_DAYS, _DURATION_WEEKS, _DURATION_MONTHS = 1, 2, 3
_PERIODICITIES = {
    (1, _DURATION_DAYS): "Daily", (1, _DURATION_WEEKS): "Weekly", (1, _DURATION_MONTHS): "Monthly",
    (3, _DURATION_MONTHS): "Quarterly", (6, _DURATION_MONTHS): "SixMonthly",
    (12, _DURATION_MONTHS): "Yearly",
}  # fmt: skip


def _gcs21d(source: Source) -> Reading:
    # Price cluster Publish Billing Period: provider id (4), issuer event id (4), start
    # (UTC, 4), duration (3), duration type (timebase in bits 0-3), tariff type (1).
    components, reading = gbz_outcome(source)
    for component in components:
        if component.cluster == PRICE and component.command == PUBLISH_BILLING_PERIOD:
            reader = ZclReader(component.payload)
            reader.take(8, "provider and issuer event ids")
            start = gbz.utc_time(reader.uint(4, "billing period start"))
            duration = reader.uint(3, "billing period duration")
            timebase = reader.uint(1, "duration type") & 0x0F
            periodicity = _PERIODICITIES.get((duration, timebase))
            if start is None or periodicity is None:
                raise DecodeError(f"billing period {duration} x {timebase} has no MMC name")
            calendar = branch("GasBillingCalendar", leaf("BillingPeriodStart", start),
                              leaf("Periodicity", periodicity))  # fmt: skip
            return _done(reading, branch("BillingCalendar", calendar))
    return _done(reading)


_DEBT_FREQUENCIES = {0: "HOURLY", 1: "DAILY"}


def _gcs21b(source: Source) -> Reading:
    # Prepayment attributes by id: debt recovery top-up percentage (0x0239), overall debt
    # cap (0x0006), cut off value (0x0040), emergency credit limit and threshold (0x0010,
    # 0x0011), low credit warning level (0x0031), max credit per top up (0x0022), max
    # credit limit (0x0021), and time-based debts 1 and 2 (amount 0x0217 / 0x0227,
    # frequency 0x0216 / 0x0226).
    attributes, _, reading = _read(source)

    def value(attribute: int) -> int | None:
        return attributes.number(PREPAYMENT, attribute)

    def recovery(name: str, amount: int, frequency: int) -> Node | None:
        rate, period = value(amount), value(frequency)
        if rate is None and period is None:
            return None
        return branch(
            name,
            _optional("DebtRecoveryRate", rate),
            _optional("DebtRecoveryRatePeriod", _DEBT_FREQUENCIES.get(period or -1)),
        )

    return _done(
        reading,
        _optional("DebtRecoveryPerPayment", value(0x0239)),
        _optional("DebtRecoveryRateCap", value(0x0006)),
        _optional("DisablementThreshold", value(0x0040)),
        _optional("EmergencyCreditLimit", value(0x0010)),
        _optional("EmergencyCreditThreshold", value(0x0011)),
        _optional("LowCreditThreshold", value(0x0031)),
        _optional("CreditMaxCreditThreshold", value(0x0022)),
        _optional("MaxCreditMaxMeterBalance", value(0x0021)),
        branch("Gas", recovery("DebtRecovery1", 0x0217, 0x0216),
               recovery("DebtRecovery2", 0x0227, 0x0226)),
    )  # fmt: skip


_C = MESSAGE_CODES
GCS_LAYOUTS: dict[int, Reader] = {
    _C["CS10a"]: _cs10,
    _C["CS10b"]: _cs10,
    _C["GCS13a"]: _gcs13a,
    _C["GCS13b"]: _gcs13b,
    _C["GCS13c"]: _gcs13c,
    _C["GCS14"]: _gcs14,
    _C["GCS21a"]: _gcs21a,
    _C["GCS21b"]: _gcs21b,
    _C["GCS21d"]: _gcs21d,
    _C["GCS21k"]: _gcs21d,
    _C["GCS21e"]: _identity,
    _C["GCS21m"]: _identity,
    _C["GCS21j"]: _gcs21j,
    _C["GCS31"]: _gcs31,
    _C["GCS33"]: _gcs33,
    _C["GCS38"]: _gcs38,
    _C["GCS46"]: _gcs46,
    _C["GCS60"]: _gcs60,
    _C["GCS60a"]: _gcs60,
}
