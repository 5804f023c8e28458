"""Tyk's request wrapper: what a hook receives as `request`. `.object` is the MiniRequestObject
message itself; the helpers change it in place."""


class TykCoProcessRequest(object):
    __slots__ = ("object",)

    def __init__(self, object):
        self.object = object

    def get_header(self, key):
        """The request header `key` as the client sent it, or None."""
        headers = self.object.headers
        if key in headers:
            return headers[key]
        return None

    def add_header(self, key, value):
        """Sets header `key` on the request sent upstream."""
        self.object.set_headers[key] = value

    def delete_header(self, key):
        """Removes header `key` from the request sent upstream."""
        self.object.delete_headers.append(key)

    def add_param(self, key, value):
        """Sets query parameter `key` on the request sent upstream."""
        self.object.add_params[key] = value

    def delete_param(self, key):
        """Removes query parameter `key` from the request sent upstream."""
        self.object.delete_params.append(key)

    def __repr__(self):
        return "TykCoProcessRequest({0!r})".format(self.object)


__all__ = ["TykCoProcessRequest"]
