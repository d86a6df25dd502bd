"""Decoded values checked against expectations worked out by hand from the hex.

Each case names an RTDS 4.5.0 vector, the path of an MMC output element and the value
it must hold. The expected values were derived by reading the vector's payload bytes
against the GBCS use-case definitions (DLMS A-XDR for ECS, ZCL for GCS, ASN.1 DER for
the CS use cases, the alert formats of GBCS section 16), never from this decoder's
output; the comment above each group shows the bytes and the arithmetic. Times: DLMS
date-times are year(2) month day weekday hour minute second hundredths deviation(2)
status; log and ZCL times count seconds from 2000-01-01T00:00:00Z.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytest
from lxml import etree

from parse_correlate.gbcs import parse_message
from parse_correlate.mmc_output import RA_NAMESPACE, render_mmc_output

RA = {"ra": RA_NAMESPACE}
RSP = "ra:Body/ra:ResponseMessage/ra:SMETSData/ra:"
ALERT = "ra:Body/ra:DeviceAlertMessage/ra:DeviceAlertContent/ra:"
FUTURE = ALERT + "Payload/ra:FutureDatedCommandOutcomeDeviceAlert/"


class Case(NamedTuple):
    vector: str  # folder/file under RTDS-4.5.0
    path: str  # XPath in the MMC output (ra: prefix)
    expected: list[str]


# fmt: off
CASES = [
    # ECS17a Read Instantaneous Export Registers. Payload after the access-response header
    # (da 200004b0 00 00 04): 06 0000000a = 10, 0202 0f00 161e = scaler 0, unit 30 (Wh);
    # 06 00000014 = 20, 0202 0f00 1620 = scaler 0, unit 32 (varh); results 01 00 x4 = got.
    Case("4.2_ECS17a/ECS17a_4.2_SUCCESS_RESPONSE_GBCS.HEX",
         RSP + "ReadInstantaneousExportRegistersRsp/ra:ActiveExportRegister/ra:Value", ["10"]),
    Case("4.2_ECS17a/ECS17a_4.2_SUCCESS_RESPONSE_GBCS.HEX",
         RSP + "ReadInstantaneousExportRegistersRsp/ra:ActiveExportRegister/ra:ActiveEnergyUnit",
         ["Wh"]),
    Case("4.2_ECS17a/ECS17a_4.2_SUCCESS_RESPONSE_GBCS.HEX",
         RSP + "ReadInstantaneousExportRegistersRsp/ra:ReactiveExportRegister/ra:Value", ["20"]),
    Case("4.2_ECS17a/ECS17a_4.2_SUCCESS_RESPONSE_GBCS.HEX",
         RSP + "ReadInstantaneousExportRegistersRsp/ra:ReactiveExportRegister/"
         "ra:ReactiveEnergyUnit", ["varh"]),
    # Its header date-time 07df 01 01 ff 00 00 00 00 8000 ff = 2015-01-01 00:00:00.
    Case("4.2_ECS17a/ECS17a_4.2_SUCCESS_RESPONSE_GBCS.HEX", "ra:Header/ra:Timestamp",
         ["2015-01-01T00:00:00Z"]),
    # The error vector's results: 01 00, 01 00, 01 01 (hardware-fault), 01 fa (250,
    # other-reason): the reactive register is absent; every result is listed by position.
    Case("4.2_ECS17a/ECS17a_4.2_ERROR_RESPONSE_GBCS.HEX",
         RSP + "ReadInstantaneousExportRegistersRsp/@MessageSuccess", ["false"]),
    Case("4.2_ECS17a/ECS17a_4.2_ERROR_RESPONSE_GBCS.HEX",
         RSP + "ReadInstantaneousExportRegistersRsp/ra:ReactiveExportRegister", []),
    Case("4.2_ECS17a/ECS17a_4.2_ERROR_RESPONSE_GBCS.HEX",
         "ra:Body/ra:ResponseMessage/ra:DebugInfo/ra:COSEMDebug/ra:COSEMResponse/"
         "ra:DataAccessResult", ["success", "success", "hardware-fault", "other-reason"]),
    # ECS82 Read Meter Balance: 06 0003d090 = 250000.
    Case("4.18_ECS82/ECS82_4.18_SUCCESS_RESPONSE_GBCS.HEX",
         RSP + "ReadMeterBalanceRsp/ra:MeterBalance", ["250000"]),
    # ECS52 Read Firmware Version: 09 04 0123abcd.
    Case("11.2_ECS52/ECS52_11.2_SUCCESS_RESPONSE_GBCS.HEX",
         RSP + "ReadFirmwareVersionRsp/ra:FirmwareVersion", ["0123ABCD"]),
    # ECS45 Read Supply Status: 16 01, disconnect control state 1 = connected.
    Case("7.4_ECS45/ECS45_7.4_SUCCESS_RESPONSE_GBCS.HEX",
         RSP + "ReadSupplyStatusRsp/ra:SupplyState", ["Enabled"]),
    # ECS18a Read Maximum Demand Export: 090c 07de0c1fff000000008000ff (last reset
    # 2014-12-31 00:00), 06 000012a7 = 4775, 0202 0f00 161b (W), 090c 07de0c1eff1425...
    # (captured 2014-12-30 20:37:00).
    Case("4.12.2_ECS18a/ECS18a_4.12.2_SUCCESS_RESPONSE_GBCS.HEX",
         RSP + "ReadMaximumDemandExportRegistersRsp/ra:MaxDemandActiveEnergyExport/ra:Value",
         ["4775"]),
    Case("4.12.2_ECS18a/ECS18a_4.12.2_SUCCESS_RESPONSE_GBCS.HEX",
         RSP + "ReadMaximumDemandExportRegistersRsp/ra:MaxDemandActiveEnergyExport/"
         "ra:CaptureTime", ["2014-12-30T20:37:00Z"]),
    Case("4.12.2_ECS18a/ECS18a_4.12.2_SUCCESS_RESPONSE_GBCS.HEX",
         RSP + "ReadMaximumDemandExportRegistersRsp/ra:MaxDemandActiveEnergyExport/"
         "ra:LastResetDateTime", ["2014-12-31T00:00:00Z"]),
    # ECS26c randomisation: 12 00c8 = 200 (0-0:94.44.0.0), 12 07d0 = 2000 (.0.2),
    # 12 03e8 = 1000 (.0.1, the limit ECS38 sets).
    Case("6.2.2_ECS26c/ECS26c_6.2.2_SUCCESS_RESPONSE_GBCS.HEX",
         RSP + "ReadDeviceConfigurationRandomisationRsp/ra:RandomisedOffset", ["200"]),
    Case("6.2.2_ECS26c/ECS26c_6.2.2_SUCCESS_RESPONSE_GBCS.HEX",
         RSP + "ReadDeviceConfigurationRandomisationRsp/ra:RandomisedOffsetLimit", ["1000"]),
    # ECS40 (twin): 09 1a "1312345678111" "1312345678222", 09 0d "1312345678333".
    Case("6.2.7_ECS40/ECS40_6.2.7_TWIN_SUCCESS_RESPONSE_GBCS.HEX",
         RSP + "ReadDeviceConfigurationMPxNRsp/ra:Electricity/ra:SecondaryImportMPAN",
         ["1312345678222"]),
    Case("6.2.7_ECS40/ECS40_6.2.7_TWIN_SUCCESS_RESPONSE_GBCS.HEX",
         RSP + "ReadDeviceConfigurationMPxNRsp/ra:Electricity/ra:ExportMPAN",
         ["1312345678333"]),
    # ECS70 Set Clock: the read-back time 090c 07df0101ff00000000 8000ff and status 11 00.
    Case("6.11_ECS70/ECS70_6.11_SUCCESS_RESPONSE_GBCS.HEX",
         RSP + "SynchroniseClockRsp/ra:DeviceTime", ["2015-01-01T00:00:00Z"]),
    Case("6.11_ECS70/ECS70_6.11_SUCCESS_RESPONSE_GBCS.HEX",
         RSP + "SynchroniseClockRsp/ra:Electricity/ra:ElecClockTimeStatus/ra:TimeStatus",
         ["reliable"]),
    # ECS20a debt payments: compact array 13 0202 0606, 80 bytes: first entry
    # 1c2b6d00 (472608000 s = 2014-12-23) 0000005f (95), last 1c374a80 (2015-01-01) 72 (114).
    Case("4.4.4_ECS20a/ECS20a_4.4.4_SUCCESS_RESPONSE_GBCS.HEX",
         RSP + "RetrieveBillingDataLogDebtPaymentsRsp/ra:PaymentBasedDebtRepayment/"
         "ra:LogEntry[1]/ra:Amount", ["95"]),
    Case("4.4.4_ECS20a/ECS20a_4.4.4_SUCCESS_RESPONSE_GBCS.HEX",
         RSP + "RetrieveBillingDataLogDebtPaymentsRsp/ra:PaymentBasedDebtRepayment/"
         "ra:LogEntry[1]/ra:Timestamp", ["2014-12-23T00:00:00Z"]),
    Case("4.4.4_ECS20a/ECS20a_4.4.4_SUCCESS_RESPONSE_GBCS.HEX",
         RSP + "RetrieveBillingDataLogDebtPaymentsRsp/ra:PaymentBasedDebtRepayment/"
         "ra:LogEntry[10]/ra:Amount", ["114"]),
    # ECS26f power thresholds: 01 02, 06 000008fc = 2300, 06 000011f8 = 4600.
    Case("6.2.5_ECS26f/ECS26f_6.2.5_SUCCESS_RESPONSE_GBCS.HEX",
         RSP + "ReadDeviceConfigurationInstantaneousPowerThresholdsRsp/"
         "ra:MediumHighPowerThreshold", ["4600"]),
    # ECS27 load limit: 03 00 (no disable), 06 1e (counter 30), 06 1af4 (6900),
    # 06 012c (300 s), 06 1e (30 s).
    Case("4.15_ECS27/ECS27_4.15_SUCCESS_RESPONSE_GBCS.HEX",
         RSP + "ReadLoadLimitDataRsp/ra:LoadLimitPowerThreshold", ["6900"]),
    Case("4.15_ECS27/ECS27_4.15_SUCCESS_RESPONSE_GBCS.HEX",
         RSP + "ReadLoadLimitDataRsp/ra:LoadLimitPeriod", ["300"]),
    Case("4.15_ECS27/ECS27_4.15_SUCCESS_RESPONSE_GBCS.HEX",
         RSP + "ReadLoadLimitDataRsp/ra:LoadLimitSupplyState", ["Unchanged"]),
    # GCS60 meter balances: Metering (0702) read attributes response, 000a 00 23
    # e0673500 = 0x003567e0 = 3500000; Prepayment (0705) 0100 00 2b a0252600 = 2500000.
    Case("4.18_GCS60/GCS60_4.18_SUCCESS_RESPONSE_GBCS.HEX",
         RSP + "ReadMeterBalanceRsp/ra:MeterBalance", ["3500000"]),
    Case("4.18_GCS60/GCS60_4.18_SUCCESS_RESPONSE_GBCS.HEX",
         RSP + "ReadMeterBalanceRsp/ra:Gas/ra:MeterBalancePrepaymentMode", ["2500000"]),
    # GCS33 supply status: 0502 00 21 6400 (battery 100 days), 1400 00 30 02 (supply on).
    Case("7.4_GCS33/GCS33_7.4_SUCCESS_RESPONSE_GBCS.HEX",
         RSP + "ReadSupplyStatusRsp/ra:SupplyState", ["Enabled"]),
    Case("7.4_GCS33/GCS33_7.4_SUCCESS_RESPONSE_GBCS.HEX",
         RSP + "ReadSupplyStatusRsp/ra:Gas/ra:RemainingBatteryCapacity", ["100"]),
    # GCS46 MPRN: 0703 00 41 0a "1000999888".
    Case("6.2.7_GCS46/GCS46_6.2.7_SUCCESS_RESPONSE_GBCS.HEX",
         RSP + "ReadDeviceConfigurationMPxNRsp/ra:Gas/ra:MPRN", ["1000999888"]),
    # GCS38 firmware: 0602 00 41 04 0123abcd.
    Case("11.2_GCS38/GCS38_11.2_SUCCESS_RESPONSE_GBCS.HEX",
         RSP + "ReadFirmwareVersionRsp/ra:FirmwareVersion", ["0123ABCD"]),
    # GCS31 Start Sampling Response (frame control 09, command 0d): sample id 0200 = 2.
    Case("14.1_GCS31/GCS31_14.1_SUCCESS_RESPONSE_GBCS.HEX",
         RSP + "RecordNetworkDataGASRsp/ra:SampleID", ["2"]),
    # GCS21d Publish Billing Period: start 0017561a = 0x1a561700 s = 2014-01-01,
    # duration 010000 = 1, duration type 22 (timebase 2: weeks).
    Case("6.2.3_GCS21d/GCS21d_6.2.3_SUCCESS_RESPONSE_GBCS.HEX",
         RSP + "ReadDeviceConfigurationDataBillingCalendarRsp/ra:BillingCalendar/"
         "ra:GasBillingCalendar/ra:BillingPeriodStart", ["2014-01-01T00:00:00Z"]),
    Case("6.2.3_GCS21d/GCS21d_6.2.3_SUCCESS_RESPONSE_GBCS.HEX",
         RSP + "ReadDeviceConfigurationDataBillingCalendarRsp/ra:BillingCalendar/"
         "ra:GasBillingCalendar/ra:Periodicity", ["Weekly"]),
    # GCS40a error: Default Response (frame control 08, command 0b) 05 c0: status 0xC0.
    Case("1.5_GCS40a/GCS40a_1.5_ERROR_RESPONSE_GBCS.HEX",
         RSP + "UpdateMeterBalanceRsp/@MessageSuccess", ["false"]),
    Case("1.5_GCS40a/GCS40a_1.5_ERROR_RESPONSE_GBCS.HEX",
         "ra:Body/ra:ResponseMessage/ra:DebugInfo/ra:ZIGBEEDebug/ra:ZIGBEEClusterResponse/"
         "ra:ZIGBEECommandResponse/ra:Status/ra:ZCLStatus", ["HARDWARE_FAILURE"]),
    # CS03B error: INTEGER 02 = invalid join method and role.
    Case("8.7.2_CS03B/CS03B_8.7.2_ERROR_RESPONSE_GBCS.HEX",
         RSP + "JoinServiceNonCriticalRsp/ra:joinResponseCode/ra:ASN1Status",
         ["invalidJoinMethodAndRole"]),
    # CS07 device log: entries 0102030405060708 type 3 (GPF), 00db123456789099 type 3,
    # 00db123456789097 type 5 (PPMID).
    Case("8.9_CS07/CS07_8.9_SUCCESS_RESPONSE_GBCS.HEX",
         RSP + "ReadDeviceLogRsp/ra:DeviceLogEntries/ra:LogEntry/ra:DeviceID",
         ["01-02-03-04-05-06-07-08", "00-DB-12-34-56-78-90-99", "00-DB-12-34-56-78-90-97"]),
    Case("8.9_CS07/CS07_8.9_SUCCESS_RESPONSE_GBCS.HEX",
         RSP + "ReadDeviceLogRsp/ra:DeviceLogEntries/ra:LogEntry/ra:DeviceType",
         ["GPF", "GPF", "PPMID"]),
    # CS08: SEQUENCE { 04 04 0123abcd, 02 01 00 }.
    Case("11.2_CS08/CS08_11.2_SUCCESS_RESPONSE_GBCS.HEX",
         RSP + "ReadFirmwareVersionRsp/ra:FirmwareVersion", ["0123ABCD"]),
    # GCS28: GeneralizedTime "20141231233000Z", INTEGER 0 (reliable).
    Case("6.11_GCS28/GCS28_6.11_SUCCESS_RESPONSE_GBCS.HEX",
         RSP + "SynchroniseClockRsp/ra:DeviceTime", ["2014-12-31T23:30:00Z"]),
    Case("6.11_GCS28/GCS28_6.11_SUCCESS_RESPONSE_GBCS.HEX",
         RSP + "SynchroniseClockRsp/ra:Gas/ra:GasClockTimeStatus/ra:ASN1Status", ["reliable"]),
    # CS06 immediate: SEQUENCE { INTEGER 0, OCTET STRING 0123abce }.
    Case("11.3_CS06/CS06_11.3_IMMEDIATE_SUCCESS_RESPONSE_GBCS.HEX",
         RSP + "ActivateFirmwareRsp/ra:FirmwareVersion", ["0123ABCE"]),
    # ECS08 future-dated alert: 0f 200007e1 00 0203, 12 8f66, 090c 07ee010fff0900000080
    # 00ff (2030-01-15 09:00), 0913 then 001f (ECS08) 00000000000003ec (1004)
    # 2328 (class 9000) 00005e2c801c (OBIS) 06 (attribute).
    Case("2.1_ECS08/ECS08_2.1_8F66_FUTURE_DATED_SUCCESS_ALERT_CALENDAR_GBCS.HEX",
         ALERT + "GBCSHexAlertCode", ["8F66"]),
    Case("2.1_ECS08/ECS08_2.1_8F66_FUTURE_DATED_SUCCESS_ALERT_CALENDAR_GBCS.HEX",
         ALERT + "Timestamp", ["2030-01-15T09:00:00Z"]),
    Case("2.1_ECS08/ECS08_2.1_8F66_FUTURE_DATED_SUCCESS_ALERT_CALENDAR_GBCS.HEX",
         FUTURE + "ra:COSEMFutureDatedAlert/ra:FutureDatedCommandOriginatorCounter", ["1004"]),
    Case("2.1_ECS08/ECS08_2.1_8F66_FUTURE_DATED_SUCCESS_ALERT_CALENDAR_GBCS.HEX",
         FUTURE + "ra:COSEMFutureDatedAlert/ra:DLMSCOSEMFDInstructionIdentification/"
         "ra:InstanceId", ["00005E2C801C"]),
    # GCS02 future-dated GBZ alert: 0109 01 8f66 38818890 (2030-01-15 09:00), 0e 006c
    # (GCS02) 00000000000003e9 (1001) 0705 01 06.
    Case("1.6_GCS02/GCS02_1.6_8F66_FUTURE_DATED_SUCCESS_ALERT_CHANGE_PAYMENT_MODE_GBCS.HEX",
         ALERT + "Timestamp", ["2030-01-15T09:00:00Z"]),
    Case("1.6_GCS02/GCS02_1.6_8F66_FUTURE_DATED_SUCCESS_ALERT_CHANGE_PAYMENT_MODE_GBCS.HEX",
         FUTURE + "ra:GBZFutureDatedAlert/ra:FutureDatedCommandMessageCode", ["006C"]),
    Case("1.6_GCS02/GCS02_1.6_8F66_FUTURE_DATED_SUCCESS_ALERT_CHANGE_PAYMENT_MODE_GBCS.HEX",
         FUTURE + "ra:GBZFutureDatedAlert/ra:GBZFDInstructionIdentification/"
         "ra:ExtendedHeaderClusterID", ["0705"]),
    # ECS80 supply outage restored (8f36): interrupted 07de0c1fff173200 (2014-12-31
    # 23:50:00), restored 07de0c1fff173b00 (23:59:00).
    Case("NA_ECS80/ECS80_NA_8F36_ALERT_GBCS.HEX",
         ALERT + "Payload/ra:SupplyOutageRestoreAlert/ra:interruptionValue",
         ["2014-12-31T23:50:00Z"]),
    Case("NA_ECS80/ECS80_NA_8F36_ALERT_GBCS.HEX",
         ALERT + "Payload/ra:SupplyOutageRestoreAlert/ra:restorationValue",
         ["2014-12-31T23:59:00Z"]),
    # FDRA-DLMS firmware verification (8f72): 09 20 then 32 bytes of 01.
    Case("NA_FDRA-DLMS/FDRA-DLMS_NA_8F72_ALERT_GBCS.HEX",
         ALERT + "Payload/ra:FirmwareVerificationDeviceAlert/ra:ManufacturerImageHash",
         ["01" * 32]),
]
# fmt: on


def _values(document: etree._Element, path: str) -> list[str]:
    if "/@" in path:
        element_path, attribute = path.rsplit("/@", 1)
        return [str(e.get(attribute)) for e in document.iterfind(element_path, RA)]
    return [str(e.text) for e in document.iterfind(path, RA)]


@pytest.mark.parametrize("case", CASES, ids=lambda case: f"{case.vector.split('/')[0]}")
def test_value_derived_by_hand(
    shared_dir: Path, mmc_schemas: dict[str, etree.XMLSchema], case: Case
) -> None:
    path = shared_dir / "gbcs/rtds/RTDS-4.5.0" / case.vector
    raw = bytes.fromhex(path.read_text())
    srv = case.vector.split("_", 1)[0]
    output = render_mmc_output(
        parse_message(raw), raw, "5.4", srv_hint=None if srv == "NA" else srv
    )
    document = etree.fromstring(output.xml)
    assert mmc_schemas["5.4"].validate(document)
    assert _values(document, case.path) == case.expected
