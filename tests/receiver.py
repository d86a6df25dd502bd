"""The tests' User receiver lives in bench/receiver.py (the bench runs it out of process)."""

from bench.receiver import Receiver, Seen

__all__ = ["Receiver", "Seen"]
