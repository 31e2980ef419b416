"""Configuration for tgjobs: one `Settings` read at start-up and the per-queue policy table.

Nothing outside this package reads the environment; other code receives a `Settings`
(or plain values taken from it). Call `load_settings()` once in each process.
"""

from config.defaults import DEFAULT_POLICIES
from config.durations import parse_duration
from config.errors import SettingsError
from config.loading import load_settings
from config.policy import QueuePolicy, RateLimit
from config.settings import Settings

__all__ = [
    "DEFAULT_POLICIES",
    "QueuePolicy",
    "RateLimit",
    "Settings",
    "SettingsError",
    "load_settings",
    "parse_duration",
]
