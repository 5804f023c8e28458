"""Tyk's `gateway` module: `from gateway import TykGateway as tyk`.

Every call goes through the host API the bridge handed this driver instance (`_host`, injected by the
runtime before this file runs), not through symbols looked up in the process.
"""

import sys
import traceback


def _text(value):
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


class TykGateway(object):
    @staticmethod
    def log(message, level="info"):
        """Logs through the gateway; level is debug, info, warning or error."""
        _host.log(_text(message), _text(level))

    @staticmethod
    def log_error(*messages):
        """Logs at error level; inside an `except` block the traceback is appended."""
        text = " ".join(_text(m) for m in messages)
        if sys.exc_info()[0] is not None:
            text = (text + "\n" if text else "") + traceback.format_exc()
        _host.log(text, "error")

    @staticmethod
    def store_data(key, value, ttl=0):
        """Stores `value` under `key` in the gateway's store for `ttl` seconds (0: no expiry)."""
        _host.store_data(_text(key), _text(value), int(ttl))

    @staticmethod
    def get_data(key):
        """The value stored under `key`, as bytes (b"" when absent or expired)."""
        return _host.get_data(_text(key))

    @staticmethod
    def trigger_event(event_name, payload=""):
        """Raises a gateway event with a payload (text, usually JSON)."""
        _host.trigger_event(_text(event_name), _text(payload))


__all__ = ["TykGateway"]
