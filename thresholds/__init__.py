"""Anomaly Detection Thresholds per User ID: sans-IO engine plus its stores."""
