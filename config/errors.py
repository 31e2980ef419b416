"""The one exception the config package raises for bad settings.

`load_settings` turns every validation failure into a `SettingsError` whose message is a
single line naming the setting as it is written in the environment, never its value.
"""

from __future__ import annotations


class SettingsError(Exception):
    """A setting is missing, malformed or out of range; the message names it."""
