"""Tyk's request wrapper: what a hook receives as `request`. `.object` is the MiniRequestObject
message itself; the helpers change it in place.

The runtime hands hooks a lazy wrapper (`TykCoProcessRequest._of_call`): its message is decoded on
first use of `.object` (or `get_header`), and until then the helpers that only add to the request
(`add_header`, `delete_header`, `add_param`, `delete_param`) are recorded as edits, which the runtime
appends to the serialized request as they are: a map entry appended replaces the key and a repeated
element appended is appended, which is what the same call on the decoded message does. An argument
that is not a plain ASCII `str` takes the decoded path, so it fails or succeeds exactly as it would
there."""

# Edits recorded while the message is not decoded (the runtime's Rust side knows these numbers).
SET_HEADER, DELETE_HEADER, ADD_PARAM, DELETE_PARAM = 0, 1, 2, 3


class TykCoProcessRequest(object):
    __slots__ = ("_message", "_call")

    def __init__(self, object):
        self._message = object
        self._call = None

    @classmethod
    def _of_call(cls, call):
        request = cls.__new__(cls)
        request._message = None
        request._call = call
        return request

    @property
    def object(self):
        message = self._message
        if message is None and self._call is not None:
            message = self._message = self._call.request()
        return message

    @object.setter
    def object(self, value):
        self._message = value
        self._call = None

    def _edit(self, kind, key, value):
        """Records an edit of the undecoded request; False when it must be made on the message."""
        call = self._call
        if (
            call is not None
            and self._message is None
            and key.__class__ is str
            and key.isascii()
            and (value is None or (value.__class__ is str and value.isascii()))
        ):
            call.edit(kind, key, value)
            return True
        return False

    def get_header(self, key):
        """The request header `key` as the client sent it, or None."""
        headers = self.object.headers
        if key in headers:
            return headers[key]
        return None

    def add_header(self, key, value):
        """Sets header `key` on the request sent upstream."""
        if not self._edit(SET_HEADER, key, value):
            self.object.set_headers[key] = value

    def delete_header(self, key):
        """Removes header `key` from the request sent upstream."""
        if not self._edit(DELETE_HEADER, key, None):
            self.object.delete_headers.append(key)

    def add_param(self, key, value):
        """Sets query parameter `key` on the request sent upstream."""
        if not self._edit(ADD_PARAM, key, value):
            self.object.add_params[key] = value

    def delete_param(self, key):
        """Removes query parameter `key` from the request sent upstream."""
        if not self._edit(DELETE_PARAM, key, None):
            self.object.delete_params.append(key)

    def __repr__(self):
        return "TykCoProcessRequest({0!r})".format(self.object)


__all__ = ["TykCoProcessRequest"]
