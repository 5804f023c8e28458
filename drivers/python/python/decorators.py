"""Tyk's `tyk.decorators`: mark the functions of a bundle as hooks or event handlers.

`@Hook` functions are called by their number of parameters:
  3: f(request, session, spec)                     -> (request, session)
  4: f(request, session, metadata, spec)           -> (request, session, metadata)
  5: f(request, response, session, metadata, spec) -> response
`@Event` functions are called as f(event, spec). `Pre`, `Post`, `PostKeyAuth` and `CustomKeyCheck` are
the older names of `Hook`, kept so old bundles load.
"""

import inspect


def _arg_count(f):
    code = getattr(f, "__code__", None)
    if code is not None:
        return code.co_argcount
    params = inspect.signature(f).parameters.values()
    return sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


class HandlerDecorator(object):
    """A decorated plugin function: `name` is how hooks are found, `arg_count` how they are called."""

    def __init__(self, f):
        self.f = f
        self.name = getattr(f, "__name__", repr(f))
        self.arg_count = _arg_count(f)
        self.__doc__ = getattr(f, "__doc__", None)
        self.__wrapped__ = f

    def __call__(self, *args, **kwargs):
        return self.f(*args, **kwargs)

    def __repr__(self):
        return "<{0} {1}>".format(type(self).__name__, self.name)


class Hook(HandlerDecorator):
    pass


class Pre(HandlerDecorator):
    pass


class Post(HandlerDecorator):
    pass


class PostKeyAuth(HandlerDecorator):
    pass


class CustomKeyCheck(HandlerDecorator):
    pass


class Event(HandlerDecorator):
    pass


HOOK_DECORATORS = (Hook, Pre, Post, PostKeyAuth, CustomKeyCheck)

__all__ = ["Hook", "Pre", "Post", "PostKeyAuth", "CustomKeyCheck", "Event"]
