"""GBCS message codes: which use case (or alert) a grouping header's message code names.

The code is the first two bytes of the general-signing header's other-information
(see `parse_correlate.gbcs`). A table, and the reverse lookup used to label
messages in output.
"""

from __future__ import annotations

# Use case -> GBCS message code (the grouping header's other-information). Names are the
# GBCS use-case names; where GBCS gives one use case several codes (CS02b and CS02g by
# credential owner) or names an alert rather than a use case, the name is the DCC's RTDS
# label. Codes from the RTDS 4.5.0 vectors and the gbcs-parser's message-code list.
MESSAGE_CODES: dict[str, int] = {
    "CCS01": 0x0001, "CCS02": 0x0002, "CCS03": 0x0003, "CCS05CCS04": 0x0004,
    "CS01a": 0x0007, "CS02a": 0x0008, "CS02c": 0x000A, "CS02d": 0x000B, "CS02e": 0x000C,
    "CS03A1": 0x000D, "CS03B": 0x000E, "CS04AC": 0x000F, "CS04B": 0x0010, "CS06": 0x0012,
    "CS07": 0x0013, "CS10a": 0x0014, "CS11": 0x0015, "CS14": 0x0018,
    "ECS01a": 0x0019, "ECS02": 0x001A, "ECS03": 0x001B, "ECS04a": 0x001C, "ECS05": 0x001D,
    "ECS07": 0x001E, "ECS08": 0x001F, "ECS09": 0x0020, "ECS10": 0x0021, "ECS12": 0x0022,
    "ECS14": 0x0023, "ECS15a": 0x0024, "ECS16": 0x0025, "ECS17a": 0x0026, "ECS17b": 0x0027,
    "ECS17c": 0x0028, "ECS17d": 0x0029, "ECS17e": 0x002A, "ECS18a": 0x002B, "ECS18b": 0x002C,
    "ECS19": 0x002D, "ECS20a": 0x002E, "ECS20b": 0x002F, "ECS20c": 0x0030, "ECS21a": 0x0033,
    "ECS21b": 0x0034, "ECS21c": 0x0035, "ECS22a": 0x0036, "ECS22b": 0x0037, "ECS22c": 0x0038,
    "ECS23": 0x0039, "ECS24": 0x003A, "ECS26a": 0x003B, "ECS26b": 0x003C, "ECS26c": 0x003D,
    "ECS26d": 0x003E, "ECS26e": 0x003F, "ECS26f": 0x0040, "ECS27": 0x0042, "ECS28a": 0x0043,
    "ECS28b": 0x0044, "ECS29a": 0x0045, "ECS30": 0x0046, "ECS34": 0x0047, "ECS35a": 0x0048,
    "ECS35b": 0x0049, "ECS37": 0x004A, "ECS38": 0x004B, "ECS39a": 0x004C, "ECS39b": 0x004D,
    "ECS40": 0x004E, "ECS42": 0x004F, "ECS43": 0x0050, "ECS44": 0x0051, "ECS45": 0x0052,
    "ECS46a": 0x0053, "ECS46c": 0x0054, "ECS47": 0x0055, "ECS50": 0x0058, "ECS52": 0x0059,
    "ECS57": 0x005A, "ECS61c": 0x005E, "ECS62": 0x005F, "ECS66": 0x0060, "ECS68": 0x0061,
    "ECS70": 0x0062, "ECS80": 0x0067, "ECS81": 0x0068, "ECS82": 0x0069,
    "GCS01a": 0x006B, "GCS02": 0x006C, "GCS03": 0x006D, "GCS04": 0x006E, "GCS05": 0x006F,
    "GCS06": 0x0070, "GCS07": 0x0071, "GCS09": 0x0072, "GCS11": 0x0073, "GCS13a": 0x0074,
    "GCS14": 0x0075, "GCS15c": 0x0076, "GCS16a": 0x0077, "GCS17": 0x0078, "GCS18": 0x0079,
    "GCS21a": 0x007B, "GCS23": 0x007C, "GCS24": 0x007D, "GCS25": 0x007E, "GCS28": 0x007F,
    "GCS31": 0x0080, "GCS32": 0x0081, "GCS33": 0x0082, "GCS36": 0x0083, "GCS38": 0x0084,
    "GCS39": 0x0085, "GCS40a": 0x0086, "GCS41": 0x0087, "GCS44": 0x0088, "GCS46": 0x0089,
    "GCS53": 0x008B, "GCS59": 0x008C, "GCS60": 0x008D, "PCS02": 0x0090, "ECS26i": 0x0092,
    "ECS35c": 0x0093, "ECS35d": 0x0094, "GCS16b": 0x0096, "CS01b": 0x0097, "PCS01": 0x009B,
    "GCS21d": 0x009D, "GCS21e": 0x009E, "GCS21f": 0x009F, "GCS61": 0x00A0, "CS10b": 0x00A1,
    "ECS01b": 0x00A2, "GCS01b": 0x00A3, "CS03A2": 0x00AB, "ECS25a": 0x00AC, "GCS20": 0x00AD,
    "ECS29b": 0x00AE, "CS03C": 0x00AF, "ECS25b": 0x00B0, "GCS62": 0x00B2, "ECS04b": 0x00B3,
    "GCS40b": 0x00B4, "GCS21b": 0x00B5, "GCS13c": 0x00B6, "ECS01c": 0x00B7, "GCS13b": 0x00B8,
    "ECS35e": 0x00B9, "ECS35f": 0x00BA, "ECS61a": 0x00BB, "ECS23b": 0x00BC, "ECS24b": 0x00BD,
    "ECS26j": 0x00BE, "GCS21j": 0x00BF, "GCS40c": 0x00C0, "ECS15c": 0x00C1, "GCS40d": 0x00C2,
    "GCS15b": 0x00C3, "GCS15d": 0x00C4, "GCS15e": 0x00C5, "ECS26k": 0x00C6, "ECS01d": 0x00C7,
    "ECS20d": 0x00C9,
    "FutureDatedFirmwareActivationAlert": 0x00CA,
    "FutureDatedUpdateSecurityCredentialsAlert": 0x00CB,
    "FutureDatedDLMSAlert": 0x00CC, "FutureDatedGBZAlert": 0x00CD,
    "FDRA-DLMS": 0x00CE, "FDRA-ZigBee": 0x00CF,
    "ECS29c": 0x00D1, "ECS29d": 0x00D2, "ECS29e": 0x00D3, "ECS29f": 0x00D4,
    "FailureToDeliverRemotePartyMessageAlert": 0x00D5,
    "ECS30a": 0x00D7, "GCS25a": 0x00D8, "ECS26l": 0x00D9, "GCS21k": 0x00DA, "ECS48": 0x00DB,
    "ECS08a": 0x00DE, "ECS25a1": 0x00EA, "ECS25a2": 0x00EB, "ECS25a3": 0x00EC,
    "ECS25b3": 0x00ED, "ECS25r1": 0x00EE, "ECS25r2": 0x00EF, "MIIWA-DLMS": 0x00F0,
    "GCS20r": 0x00F1, "MIIWA-ZigBee": 0x00F2, "ECS26m": 0x00F9, "ECS26n": 0x00FA,
    "GCS21m": 0x00FB, "GCS24a": 0x00FC, "ECS35g": 0x00FD, "CCS07": 0x00FE,
    "CS02bRootBySupplier": 0x0100, "CS02bRootByWanProvider": 0x0101,
    "CS02bSupplierBySupplier": 0x0102, "CS02bNOByNO": 0x0103, "CS02bACBByACB": 0x0104,
    "CS02bWPByWP": 0x0105, "CS02bTransCoSByTransCoS": 0x0106,
    "CS02bSupplierByTransCoS": 0x0107, "CS02bAnyExceptAbnormalRootByRecovery": 0x0108,
    "CS02bAnyByContingency": 0x0109,
    "DBCH01": 0x010A, "DBCH02": 0x010B, "DBCH03": 0x010C, "DBCH04": 0x010D, "DBCH05": 0x010E,
    "CCS06": 0x010F, "DBCH06": 0x0110, "DBCH07": 0x0111, "DBCH08": 0x0112, "DBCH09": 0x0113,
    "DBCH10": 0x0114, "DBCH11": 0x0115, "PECS01": 0x0116, "PECS02": 0x0117, "PECS03": 0x0118,
    "HECS01": 0x0119, "ECS46d": 0x011A, "CS02f": 0x011B, "ECS61d": 0x011C, "ECS61e": 0x011D,
    "ECS47a": 0x011E, "ECS47e": 0x011F, "ECS100": 0x0120, "ECS101": 0x0121, "ECS102": 0x0122,
    "ECS200": 0x0123, "FutureDatedUpdateLoadControllerCredentialsAlert": 0x0124,
    "CS02gLoadControllerByLoadController": 0x0125, "CS02gLoadControllerBySupplier": 0x0126,
    "CCS08": 0x0128, "CS08": 0x0129, "GCS60a": 0x012A, "CS09": 0x012B,
    "GCA-DLMS": 0x1000, "GCA-ZigBee": 0x1000, "GNCA-DLMS": 0x1001, "GNCA-ZigBee": 0x1001,
}  # fmt: skip
_NAMES_BY_CODE: dict[int, str] = {}
for _name, _code in MESSAGE_CODES.items():
    _NAMES_BY_CODE.setdefault(_code, _name)


def message_code_name(code: int) -> str | None:
    """The use case (or alert) a message code belongs to, when the table knows it."""
    return _NAMES_BY_CODE.get(code)
