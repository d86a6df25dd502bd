"""Data values that attribute limits (anomaly detection) can bound, by name.

Request body element -> the attribute name a rules file uses. Several elements
feed one name (every tariff price is a `price`). A rules file naming anything
else is refused (thresholds/config.py): a misspelt name would bound nothing.
"""

from __future__ import annotations

from typing import Final

LIMITED_ATTRIBUTES: Final = {
    "TOUPrice": "price",
    "BlockPrice": "price",
    "GasTOUPrice": "price",
    "GasBlockPrice": "price",
    "StandingCharge": "standing_charge",
    "DebtRecoveryRate": "debt_recovery_rate",
    "DebtRecoveryRateCap": "debt_recovery_rate_cap",
    "PaymentDebtRegister": "debt_adjustment",
    "EmergencyCreditLimit": "emergency_credit_limit",
    "MaxCreditThreshold": "max_credit_threshold",
}
ATTRIBUTE_NAMES: Final = frozenset(LIMITED_ATTRIBUTES.values())
