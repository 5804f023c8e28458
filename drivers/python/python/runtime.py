"""The Python side of libcoprocess_python.so: loads Tyk Python bundles and runs their hooks.

One `Runtime` per driver instance. The Rust side calls `dispatch(...)` (see there), `event(json)`,
`reload()`, `load_bundle(path) -> str | None` and `shutdown()`, holding the GIL only for the duration
of each call.

A hook call decodes only the parts of the Object the hook uses (`_Call`): the request when the hook
reads it (edits through the request helpers are appended to the Object undecoded), the session when
the hook does more than return it (`_plan`), metadata and spec when it uses them. An unchanged part is
not re-encoded, and a hook that changes nothing answers with its input.

Each bundle is imported as its own package, `_coprocess_bundles.b<N>_<name>`, whose `__path__` is
the bundle directory. Its modules get a private `__builtins__` whose `__import__` resolves
`import helpers` to the bundle's own `helpers.py` first, then to the modules this runtime provides
(`tyk.decorators`, `gateway`, `coprocess_*_pb2`), then to the normal import system. So two bundles
may both ship `helpers.py`, no bundle puts anything on `sys.path`, and nothing named `tyk` or
`gateway` is added to `sys.modules` (a host that is itself Python keeps its own modules).
"""

import builtins
import dis
import hashlib
import importlib
import importlib.machinery
import itertools
import json
import os
import sys
import threading
import traceback
import types

ROOT = "_coprocess_bundles"
_builtin_import = builtins.__import__
_sequence = itertools.count(1)


# ----------------------------------------------------------------------------------------------
# Namespaces: the root package, the finder and loader of bundle modules


def _root():
    """The `_coprocess_bundles` package, shared by every runtime (and every copy of the driver)."""
    root = sys.modules.get(ROOT)
    if root is None:
        root = types.ModuleType(ROOT, "Packages of the Python bundles run by coprocess-bridge")
        root.__path__ = []
        root.__spec__ = importlib.machinery.ModuleSpec(ROOT, None, is_package=True)
        root.registry = {}
        sys.modules[ROOT] = root
    if not any(getattr(f, "_coprocess_bundle_finder", False) for f in sys.meta_path):
        sys.meta_path.insert(0, _BundleFinder())
    return root


class _BundleFinder(object):
    """Finds `_coprocess_bundles.<bundle>.<module>` in the bundle's directory and loads it with the
    bundle's builtins. Any other name is left to the other finders at the cost of one prefix test."""

    _coprocess_bundle_finder = True

    def find_spec(self, fullname, path=None, target=None):
        if not fullname.startswith(ROOT + ".") or path is None:
            return None
        parts = fullname.split(".")
        root = sys.modules.get(ROOT)
        bundle = root.registry.get(parts[1]) if root is not None and len(parts) > 2 else None
        if bundle is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            spec.loader = _BundleLoader(fullname, spec.origin, bundle.builtins)
        return spec

    def invalidate_caches(self):
        pass


class _BundleLoader(importlib.machinery.SourceFileLoader):
    """Runs a bundle module with the bundle's builtins. Compiles from source every time: no
    `__pycache__` is written into bundle directories, and a changed file is never shadowed by stale
    bytecode (pyc files are keyed by mtime in whole seconds)."""

    def __init__(self, fullname, path, bundle_builtins):
        super().__init__(fullname, path)
        self._bundle_builtins = bundle_builtins

    def get_code(self, fullname):
        path = self.get_filename(fullname)
        return compile(self.get_data(path), path, "exec", dont_inherit=True)

    def exec_module(self, module):
        module.__dict__["__builtins__"] = self._bundle_builtins
        super().exec_module(module)


def _identifier(text):
    cleaned = "".join(c if c.isalnum() or c == "_" else "_" for c in text)
    return cleaned[:40] or "bundle"


def _fingerprint(path):
    """A hash of every file of the bundle (names and contents), `__pycache__` and dot files aside."""
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or name.endswith((".pyc", ".pyo")):
                continue
            full = os.path.join(dirpath, name)
            digest.update(os.path.relpath(full, path).encode("utf-8", "surrogateescape") + b"\0")
            try:
                with open(full, "rb") as f:
                    digest.update(f.read())
            except OSError as e:
                digest.update(repr(e).encode())
            digest.update(b"\0")
    return digest.hexdigest()


def _describe(e):
    return "{0}: {1}".format(type(e).__name__, e)


# ----------------------------------------------------------------------------------------------
# Bundles


class BundleError(Exception):
    """A bundle that cannot be used; the message says why."""


class Bundle(object):
    def __init__(self, runtime, key, path):
        self.key = key
        self.path = os.path.abspath(path)
        self.short = "b{0}_{1}".format(next(_sequence), _identifier(key))
        self.package = ROOT + "." + self.short
        self.provided = runtime.provided
        self.builtins = dict(builtins.__dict__)
        self.builtins["__import__"] = self._import
        self._local = {}
        self.fingerprint = None
        self.hooks = {}
        self.events = {}
        self.error = None
        self.module = None

    # Imports from bundle code -----------------------------------------------------------------

    def _is_local(self, top):
        local = self._local.get(top)
        if local is None:
            base = os.path.join(self.path, top)
            local = os.path.isfile(base + ".py") or os.path.isdir(base)
            self._local[top] = local
        return local

    def _import(self, name, globals=None, locals=None, fromlist=(), level=0):
        if level == 0 and name:
            top = name.partition(".")[0]
            if top in self.provided:
                module = self.provided.get(name)
                if module is not None:
                    return module if fromlist else self.provided[top]
            elif top != "__pycache__" and self._is_local(top):
                full = self.package + "." + name
                module = _builtin_import(full, globals, locals, fromlist, 0)
                return module if fromlist else sys.modules[self.package + "." + top]
        return _builtin_import(name, globals, locals, fromlist, level)

    # Loading ----------------------------------------------------------------------------------

    def _manifest(self):
        path = os.path.join(self.path, "manifest.json")
        try:
            with open(path, "rb") as f:
                manifest = json.loads(f.read().decode("utf-8"))
        except FileNotFoundError:
            raise BundleError("no manifest.json in {0}".format(self.path))
        except (OSError, ValueError) as e:
            raise BundleError("manifest.json is unreadable: {0}".format(_describe(e)))
        if not isinstance(manifest, dict):
            raise BundleError("manifest.json is not a JSON object")
        return manifest

    def _main_module(self, manifest):
        if os.path.isfile(os.path.join(self.path, "middleware.py")):
            return "middleware"
        files = manifest.get("file_list") or []
        python = [f for f in files if isinstance(f, str) and f.endswith(".py")]
        if len(python) == 1 and "/" not in python[0]:
            return python[0][:-3]
        raise BundleError(
            "no middleware.py, and file_list names {0} Python files instead of one".format(len(python))
        )

    @staticmethod
    def _manifest_hook_names(manifest):
        names = []
        cm = manifest.get("custom_middleware") or {}
        if not isinstance(cm, dict):
            return names
        for kind in ("pre", "post", "post_key_auth", "response"):
            for entry in cm.get(kind) or []:
                if isinstance(entry, dict) and entry.get("name"):
                    names.append(entry["name"])
        auth = cm.get("auth_check")
        if isinstance(auth, dict) and auth.get("name"):
            names.append(auth["name"])
        return names

    def load(self, log):
        """Imports the bundle; on failure `error` says why (and the log has the traceback)."""
        self.fingerprint = _fingerprint(self.path)
        root = _root()
        package = types.ModuleType(self.package)
        package.__path__ = [self.path]
        package.__package__ = self.package
        spec = importlib.machinery.ModuleSpec(self.package, None, is_package=True)
        spec.submodule_search_locations = [self.path]
        package.__spec__ = spec
        sys.modules[self.package] = package
        root.registry[self.short] = self
        try:
            manifest = self._manifest()
            driver = (manifest.get("custom_middleware") or {}).get("driver")
            if driver not in (None, "", "python"):
                log("bundle '{0}': manifest driver is '{1}', loading it as Python anyway".format(self.key, driver), "warning")
            main = self._main_module(manifest)
            self.module = importlib.import_module(self.package + "." + main)
            self._collect(manifest, log)
        except BundleError as e:
            self.error = str(e)
            log("bundle '{0}' ({1}) failed to load: {2}".format(self.key, self.path, self.error), "error")
        except BaseException as e:
            if isinstance(e, KeyboardInterrupt):
                raise
            self.error = _describe(e)
            log(
                "bundle '{0}' ({1}) failed to load: {2}\n{3}".format(
                    self.key, self.path, self.error, traceback.format_exc()
                ),
                "error",
            )
        if self.error is not None:
            self.unload()
        return self

    def _collect(self, manifest, log):
        decorators = self.provided["tyk.decorators"]
        for value in list(vars(self.module).values()):
            if isinstance(value, decorators.Event):
                self.events[value.name] = value
            elif isinstance(value, decorators.HOOK_DECORATORS):
                self.hooks[value.name] = value
        for name in self._manifest_hook_names(manifest):
            if name in self.hooks:
                continue
            plain = getattr(self.module, name, None)
            if callable(plain):
                # Named in the manifest but not decorated: treat it as a @Hook.
                self.hooks[name] = decorators.Hook(plain)
            else:
                log("bundle '{0}': the manifest names hook '{1}', which the bundle does not define".format(self.key, name), "warning")
        for hook in self.hooks.values():
            if hook.arg_count not in (3, 4, 5):
                hook.bad_arity = "hook '{0}' takes {1} parameters; hooks take 3, 4 or 5".format(hook.name, hook.arg_count)
                log("bundle '{0}': {1}".format(self.key, hook.bad_arity), "error")

    def unload(self):
        """Forgets the bundle's modules (calls already running keep the objects they hold)."""
        root = sys.modules.get(ROOT)
        if root is not None and root.registry.get(self.short) is self:
            del root.registry[self.short]
        prefix = self.package + "."
        for name in [n for n in list(sys.modules) if n == self.package or n.startswith(prefix)]:
            sys.modules.pop(name, None)


# ----------------------------------------------------------------------------------------------
# The runtime


class BundleGroup(object):
    """Tyk's install folder for an API naming several bundles ("a.zip,b.zip"): no manifest.json, one
    sub-folder per bundle, handed over as one bundle keyed by the list's hash. Each member is a
    Bundle of its own (its own modules); a hook or event handler comes from the first member that
    defines it."""

    def __init__(self, runtime, key, path):
        self.key = key
        self.path = os.path.abspath(path)
        self.members = [
            Bundle(runtime, "{0}/{1}".format(key, name), os.path.join(self.path, name))
            for name in sorted(os.listdir(self.path))
            if not name.startswith(".") and os.path.isdir(os.path.join(self.path, name))
        ]
        self.fingerprint = None
        self.hooks = {}
        self.events = {}
        self.error = None

    @staticmethod
    def holds(path):
        if os.path.exists(os.path.join(path, "manifest.json")):
            return False
        try:
            names = os.listdir(path)
        except OSError:
            return False
        return any(os.path.isfile(os.path.join(path, n, "manifest.json")) for n in names)

    def load(self, log):
        self.fingerprint = _fingerprint(self.path)
        for member in self.members:
            member.load(log)
            if member.error is not None and self.error is None:
                self.error = "bundle '{0}': {1}".format(member.key, member.error)
            for name, hook in member.hooks.items():
                self.hooks.setdefault(name, hook)
            for name, handler in member.events.items():
                self.events.setdefault(name, handler)
        if self.error is not None:
            self.unload()
        return self

    def unload(self):
        for member in self.members:
            member.unload()


class TykEvent(object):
    """An event as Tyk hands it to handlers: the JSON object's keys as attributes."""

    def __init__(self, data):
        self.__dict__.update(data)

    def __repr__(self):
        return "TykEvent({0!r})".format(self.__dict__)


# ----------------------------------------------------------------------------------------------
# One hook call


# Top-level fields of coprocess.Object, as bits of the mask `_Call.answer` returns.
_REQUEST_FIELD, _SESSION_FIELD, _METADATA_FIELD, _SPEC_FIELD, _RESPONSE_FIELD = 1 << 3, 1 << 4, 1 << 5, 1 << 6, 1 << 7
_MAP_FIELDS = _METADATA_FIELD | _SPEC_FIELD
# Indexes of `parts` (as the Rust side sends them).
_REQUEST_PART, _SESSION_PART, _RESPONSE_PART, _MAPS_PART = 0, 1, 2, 3
# At most this many canonical forms of metadata + spec are kept (see `_Call.answer`).
_CANONICAL_MAPS_KEPT = 256


class _Call(object):
    """One call's Object, decoded only as far as the hook uses it.

    `data` is the serialized Object; `parts[i]` locates the records of the request, the session, the
    response, and metadata + spec: None when the Object has none, `(start, end)` when they are one
    run of `data`, or the records themselves (bytes) when scattered. `obj` is an Object that holds
    only the parts decoded so far, each decoded when the hook reaches it by merging that part's own
    records into `obj`, so presence and merging are exactly a whole decode's; `fields` says which
    top-level fields `obj` holds.

    `answer()` turns what happened into the reply: None when nothing changed; else the request edits
    recorded without decoding (appended to the Object by the Rust side), and `obj` re-encoded, which
    replaces the records of the fields it holds."""

    __slots__ = ("runtime", "data", "parts", "obj", "fields", "edits")

    def __init__(self, runtime, data, parts):
        self.runtime = runtime
        self.data = data
        self.parts = parts
        self.obj = None
        self.fields = 0
        self.edits = None

    def _records(self, part):
        found = self.parts[part]
        if found is None or found.__class__ is bytes:
            return found
        return self.data[found[0]:found[1]]

    def has_maps(self):
        """Whether metadata or spec may have entries (decoded, or records in the input)."""
        return bool(self.fields & _MAP_FIELDS) or self.parts[_MAPS_PART] is not None

    def _decode(self, part, field):
        """`obj`, with the part decoded into it."""
        obj = self.obj
        if obj is None:
            obj = self.obj = self.runtime.Object()
        if not self.fields & field:
            records = self._records(part)
            if records:
                obj.MergeFromString(records)
            self.fields |= field
        return obj

    def maps(self):
        """`obj`, with metadata and spec decoded."""
        return self._decode(_MAPS_PART, _MAP_FIELDS)

    def request(self):
        """The request message, decoded, with the edits recorded so far applied to it."""
        request = self._decode(_REQUEST_PART, _REQUEST_FIELD).request
        edits = self.edits
        if edits:
            self.edits = None
            for kind, key, value in edits:
                if kind == 0:
                    request.set_headers[key] = value
                elif kind == 1:
                    request.delete_headers.append(key)
                elif kind == 2:
                    request.add_params[key] = value
                else:
                    request.delete_params.append(key)
        return request

    def decoded_request(self):
        return self.obj.request if self.fields & _REQUEST_FIELD else None

    def session(self):
        return self._decode(_SESSION_PART, _SESSION_FIELD).session

    def response(self):
        return self._decode(_RESPONSE_PART, _RESPONSE_FIELD).response

    def edit(self, kind, key, value):
        """Records a request edit (kinds: tyk.request's SET_HEADER...). Only while the request is
        not decoded: the lazy request wrapper decodes it otherwise."""
        if self.edits is None:
            self.edits = [(kind, key, value)]
        else:
            self.edits.append((kind, key, value))

    def real(self, value):
        """`value`, or what it stands for if it is a placeholder (a hook may return one in another
        position, e.g. its spec as metadata)."""
        if value.__class__ is _Unread:
            if value is _UNREAD_SESSION:
                return self.session()
            obj = self.maps()
            return obj.metadata if value is _UNREAD_METADATA else obj.spec
        return value

    def answer(self):
        """None when nothing changed, else `(edits, fields, encoded)`: the request edits (or None),
        the mask of the top-level fields whose records `encoded` replaces (0: none)."""
        obj = self.obj
        fields = self.fields
        if fields == _MAP_FIELDS:
            # Only metadata and spec were decoded (read, perhaps changed). Map order in an encoding
            # is arbitrary, so compare canonical (deterministic) encodings; the input's is cached, as
            # an API's spec repeats from call to call.
            records = self._records(_MAPS_PART) or b""
            canonical = self.runtime.canonical_maps
            before = canonical.get(records)
            if before is None:
                before = self.runtime.Object.FromString(records).SerializeToString(deterministic=True)
                if len(canonical) >= _CANONICAL_MAPS_KEPT:
                    canonical.clear()
                canonical[records] = before
            if obj.SerializeToString(deterministic=True) == before:
                fields = 0
        if not fields:
            return None if self.edits is None else (self.edits, 0, None)
        return (self.edits, fields, obj.SerializeToString())


class _Unread(object):
    """What a hook gets for a parameter it never uses except to return it as given (see `_plan`):
    that part of the Object is then neither decoded nor re-encoded."""

    __slots__ = ("role",)

    def __init__(self, role):
        self.role = role

    def __repr__(self):
        return "<{0}: not decoded, the hook only returns it>".format(self.role)


_UNREAD_SESSION, _UNREAD_METADATA, _UNREAD_SPEC = _Unread("session"), _Unread("metadata"), _Unread("spec")
_SESSION, _METADATA, _SPEC = 1, 2, 4
# Instructions that push a local (or a constant) without using it, across CPython versions.
_LOADS = frozenset(["LOAD_FAST", "LOAD_FAST_CHECK", "LOAD_FAST_BORROW", "LOAD_FAST_LOAD_FAST", "LOAD_FAST_BORROW_LOAD_FAST_BORROW"])
_PUSHES = _LOADS | frozenset(["LOAD_CONST", "LOAD_SMALL_INT"])
# A function that names one of these may see its own locals.
_INTROSPECTION = frozenset(["locals", "vars", "eval", "exec", "globals", "breakpoint", "_getframe", "currentframe", "f_locals", "inspect", "sys"])
_GENERATOR_FLAGS = 0x20 | 0x80 | 0x200  # CO_GENERATOR, CO_COROUTINE, CO_ASYNC_GENERATOR


def _plan(hook, decorators):
    """How to call `hook`: `(callable, unread)`. `unread` has a bit (_SESSION, _METADATA, _SPEC) for
    each of those parameters that the hook's code provably never uses except to return it as is
    (`return request, session`), or not at all: the call passes a placeholder there, and the part is
    not decoded. Anything the check does not recognise counts as a use. A plain function behind one
    of the decorators is called directly (the decorator would only pass the arguments on)."""
    target = hook
    if type(hook).__call__ is decorators.HandlerDecorator.__call__:
        target = hook.f
    positions = {3: ((1, _SESSION), (2, _SPEC)), 4: ((1, _SESSION), (2, _METADATA), (3, _SPEC)),
                 5: ((2, _SESSION), (3, _METADATA), (4, _SPEC))}.get(hook.arg_count, ())
    code = getattr(target, "__code__", None)
    if (
        type(target) is not types.FunctionType
        or code.co_flags & _GENERATOR_FLAGS
        or code.co_argcount != hook.arg_count
        or _INTROSPECTION.intersection(code.co_names)
    ):
        return target, 0
    try:
        instructions = list(dis.get_instructions(code))
    except Exception:
        return target, 0
    unread = 0
    for position, bit in positions:
        name = code.co_varnames[position]
        if name not in code.co_cellvars and _only_returned(instructions, name):
            unread |= bit
    return target, unread


def _only_returned(instructions, name):
    """Whether every instruction that touches local `name` loads it into a tuple or list that is
    returned right away."""
    for i, ins in enumerate(instructions):
        if "FAST" not in ins.opname and "DEREF" not in ins.opname:
            continue
        names = ins.argval if isinstance(ins.argval, tuple) else (ins.argval,)
        if name not in names:
            continue
        if ins.opname not in _LOADS:
            return False
        # Count the values pushed from this load (inclusive) up to the tuple that takes them.
        pushed = len(names) - names.index(name)
        j = i + 1
        while j < len(instructions) and instructions[j].opname in _PUSHES:
            value = instructions[j].argval
            pushed += len(value) if instructions[j].opname in _LOADS and isinstance(value, tuple) else 1
            j += 1
        if not (
            j + 1 < len(instructions)
            and instructions[j].opname in ("BUILD_TUPLE", "BUILD_LIST")
            and instructions[j].arg >= pushed
            and instructions[j + 1].opname == "RETURN_VALUE"
        ):
            return False
    return True


class Runtime(object):
    def __init__(self, host, descriptor_set, sources, bundle_root, python_path):
        self.host = host
        for p in reversed(python_path or []):
            if p not in sys.path:
                sys.path.insert(0, p)
        self._classes(descriptor_set)
        self.provided = self._provided_modules(sources)
        self.request_class = self.provided["tyk.request"].TykCoProcessRequest
        self.canonical_maps = {}
        self.bundle_root = bundle_root
        self.bundles = {}
        self.extra = {}
        self.lock = threading.Lock()
        if bundle_root:
            with self.lock:
                self.bundles = self._scan({})

    def log(self, message, level="info"):
        self.host.log(message, level)

    # Message classes ----------------------------------------------------------------------------

    def _classes(self, descriptor_set):
        try:
            from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
            from google.protobuf.internal import enum_type_wrapper
        except ImportError as e:
            raise ImportError(
                "the Python package 'protobuf' is needed by the Python driver and is not importable "
                "by {0} ({1}); install it with `{0} -m pip install protobuf`".format(sys.executable or "python3", e)
            )
        files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set)
        # A private pool: a host or bundle that loads Tyk's own generated coprocess_*_pb2 modules into
        # the default pool does not collide with ours.
        self.pool = descriptor_pool.DescriptorPool()
        for f in files.file:
            self.pool.Add(f)
        if hasattr(message_factory, "GetMessageClass"):
            message_class = message_factory.GetMessageClass
        else:  # protobuf < 4.22
            message_class = message_factory.MessageFactory(self.pool).GetPrototype
        self.files = {}
        for f in files.file:
            fd = self.pool.FindFileByName(f.name)
            module = types.ModuleType(f.name[: -len(".proto")] + "_pb2")
            module.DESCRIPTOR = fd
            for name, desc in fd.message_types_by_name.items():
                setattr(module, name, message_class(desc))
            for name, desc in fd.enum_types_by_name.items():
                setattr(module, name, enum_type_wrapper.EnumTypeWrapper(desc))
                for value in desc.values:
                    setattr(module, value.name, value.number)
            self.files[module.__name__] = module
        self.Object = self.files["coprocess_object_pb2"].Object
        hook_type = self.files["coprocess_common_pb2"]
        self.CUSTOM_KEY_CHECK = hook_type.CustomKeyCheck
        self.RESPONSE = hook_type.Response

    def _provided_modules(self, sources):
        def module(name, source, **inject):
            m = types.ModuleType(name)
            m.__file__ = "<coprocess_python>/{0}.py".format(name.replace(".", "/"))
            m.__dict__.update(inject)
            exec(compile(source, m.__file__, "exec", dont_inherit=True), m.__dict__)
            return m

        decorators = module("tyk.decorators", sources["decorators"])
        request = module("tyk.request", sources["request"])
        gateway = module("gateway", sources["gateway"], _host=self.host)
        tyk = types.ModuleType("tyk", "Tyk's Python plugin API, as provided by coprocess-bridge")
        tyk.__path__ = []
        tyk.decorators, tyk.request, tyk.gateway = decorators, request, gateway
        provided = {"tyk": tyk, "tyk.decorators": decorators, "tyk.request": request,
                    "tyk.gateway": gateway, "gateway": gateway}
        provided.update(self.files)
        return provided

    # Bundles ------------------------------------------------------------------------------------

    def _load(self, key, path):
        kind = BundleGroup if BundleGroup.holds(path) else Bundle
        return kind(self, key, path).load(self.log)

    def _scan(self, current):
        """Bundles under the root, re-importing those whose files changed. A bundle whose new
        version fails keeps serving its old one (as the bridge does for drivers)."""
        result = {}
        try:
            entries = sorted(os.listdir(self.bundle_root))
        except OSError as e:
            self.log("cannot list bundle_root {0}: {1}".format(self.bundle_root, _describe(e)), "error")
            return dict(current)
        for name in entries:
            path = os.path.join(self.bundle_root, name)
            if name.startswith(".") or name == "__pycache__" or not os.path.isdir(path):
                continue
            result[name] = self._refresh(name, path, current.get(name))
        return result

    def _refresh(self, key, path, old):
        if old is None:
            return self._load(key, path)
        if _fingerprint(path) == old.fingerprint:
            return old
        new = self._load(key, path)
        if new.error is not None and old.error is None:
            self.log("bundle '{0}' changed but its new version fails; the previous version keeps serving".format(key), "error")
            return old
        old.unload()
        self.log("bundle '{0}' reloaded".format(key), "info")
        return new

    def reload(self):
        with self.lock:
            importlib.invalidate_caches()
            bundles = self._scan(self.bundles) if self.bundle_root else {}
            for key, bundle in list(self.extra.items()):
                self.extra[key] = self._refresh(key, bundle.path, bundle)
            bundles.update(self.extra)
            for key, old in self.bundles.items():
                if bundles.get(key) is not old:
                    old.unload()
            self.bundles = bundles

    def load_bundle(self, path):
        """Loads (or re-loads) one bundle directory, keyed by its directory name. Returns an error
        message or None."""
        path = os.path.abspath(path)
        if not os.path.isdir(path):
            return "{0} is not a directory".format(path)
        key = os.path.basename(os.path.normpath(path))
        with self.lock:
            importlib.invalidate_caches()
            old = self.bundles.get(key)
            bundle = self._load(key, path)
            if bundle.error is not None:
                return "bundle '{0}' failed to load: {1}".format(key, bundle.error)
            bundles = dict(self.bundles)
            bundles[key] = bundle
            self.extra[key] = bundle
            self.bundles = bundles
            if old is not None:
                old.unload()
        return None

    def shutdown(self):
        with self.lock:
            for bundle in self.bundles.values():
                bundle.unload()
            self.bundles = {}
            self.extra = {}

    # Hooks --------------------------------------------------------------------------------------

    def _route(self, key, name):
        bundles = self.bundles
        if key:
            bundle = bundles.get(key)
            if bundle is None:
                raise BundleError("no bundle '{0}' is loaded (loaded: {1})".format(key, ", ".join(sorted(bundles)) or "none"))
            return bundle
        if len(bundles) == 1:
            return next(iter(bundles.values()))
        having = [b for b in bundles.values() if name in b.hooks]
        if len(having) == 1:
            return having[0]
        if not having:
            raise BundleError("no loaded bundle defines hook '{0}' and spec has no bundle_hash".format(name))
        raise BundleError(
            "hook '{0}' is defined by bundles {1}; spec[\"bundle_hash\"] must say which".format(
                name, ", ".join(sorted(b.key for b in having))
            )
        )

    def dispatch(self, data, name, hook_type, key, parts):
        """Runs hook `name` on the serialized Object `data`. The Rust side has read the routing
        fields (`hook_type`, `key` = spec["bundle_hash"] or None) and where each part of the Object
        lies (`parts`, see `_Call`). Returns None (nothing changed), `(edits, fields, encoded)` (see
        `_Call.answer`) or an error message (str)."""
        bundle_key = "?"
        try:
            bundle = self._route(key, name)
            bundle_key = bundle.key
            if bundle.error is not None:
                return "bundle '{0}' failed to load: {1}".format(bundle_key, bundle.error)
            hook = bundle.hooks.get(name)
            if hook is None:
                return "bundle '{0}' has no hook '{1}' (it defines: {2})".format(
                    bundle_key, name, ", ".join(sorted(bundle.hooks)) or "none"
                )
            bad = getattr(hook, "bad_arity", None)
            if bad:
                return "bundle '{0}': {1}".format(bundle_key, bad)
            call = _Call(self, data, parts)
            self._call(hook, call, hook_type)
            return call.answer()
        except BundleError as e:
            return str(e)
        except BaseException as e:
            if isinstance(e, KeyboardInterrupt):
                raise
            self.log(
                "python hook '{0}' of bundle '{1}' raised:\n{2}".format(name, bundle_key, traceback.format_exc()),
                "error",
            )
            return "python hook '{0}' of bundle '{1}' raised {2} (traceback logged)".format(name, bundle_key, _describe(e))

    def _call(self, hook, call, hook_type):
        """Calls the hook with Tyk's arguments and keeps what it changed in `call`: in-place changes
        stay, returned objects replace the given ones. Parameters the hook only returns get
        placeholders (see `_plan`), so their parts are never decoded."""
        plan = hook.__dict__.get("_coprocess_plan")
        if plan is None:
            plan = hook._coprocess_plan = _plan(hook, self.provided["tyk.decorators"])
        target, unread = plan
        request = self.request_class._of_call(call)
        session = _UNREAD_SESSION if unread & _SESSION else call.session()
        spec = _UNREAD_SPEC if unread & _SPEC else call.maps().spec
        n = hook.arg_count
        if n == 3:
            result = target(request, session, spec)
            if result is not None:
                new_request, new_session = self._unpack(hook, result, 2, "(request, session)")
                self._adopt_request(call, request, new_request)
                self._adopt(call, session, new_session, call.session)
        elif n == 4:
            metadata = _UNREAD_METADATA if unread & _METADATA else call.maps().metadata
            result = target(request, session, metadata, spec)
            if result is not None:
                new_request, new_session, new_metadata = self._unpack(hook, result, 3, "(request, session, metadata)")
                self._adopt_request(call, request, new_request)
                self._adopt(call, session, new_session, call.session)
                if new_metadata is not None and new_metadata is not metadata:
                    items = dict(call.real(new_metadata))
                    metadata = call.maps().metadata
                    metadata.clear()
                    metadata.update(items)
            if hook_type == self.CUSTOM_KEY_CHECK and call.has_maps():
                metadata = call.maps().metadata
                if len(metadata):
                    # Tyk keeps the auth hook's metadata (e.g. "token") with the session it returns.
                    call.session().metadata.update(dict(metadata))
        else:
            metadata = _UNREAD_METADATA if unread & _METADATA else call.maps().metadata
            response = call.response()
            result = target(request, response, session, metadata, spec)
            self._adopt(call, response, result, call.response)

    @staticmethod
    def _unpack(hook, result, n, shape):
        if not isinstance(result, (tuple, list)) or len(result) != n:
            raise TypeError("hook '{0}' must return {1}, not {2!r}".format(hook.name, shape, type(result).__name__))
        return result

    def _adopt_request(self, call, request, value):
        """Copies a returned request into the call's, unless it is the wrapper the hook was given
        (one kept from an earlier call is copied like any other request)."""
        if value is request and request._call is call:
            return
        if isinstance(value, self.request_class):
            value = value.object
        self._adopt(call, None, value, call.request)

    @staticmethod
    def _adopt(call, given, value, part):
        """Copies a message a hook returned into the call's `part()`, unless it is `given` (what
        the hook was handed, perhaps a placeholder) or already that part."""
        if value is None or value is given:
            return
        value = call.real(value)
        target = part()
        if value is not target:
            target.CopyFrom(value)

    # Events -------------------------------------------------------------------------------------

    def event(self, event_json):
        try:
            data = json.loads(event_json)
            if not isinstance(data, dict):
                raise ValueError("an event is a JSON object")
        except ValueError as e:
            self.log("python driver: ignoring an event that is not a JSON object: {0}".format(e), "error")
            return
        name = data.get("handler_name")
        spec = data.get("spec") or {}
        handled = False
        for bundle in list(self.bundles.values()):
            handler = bundle.events.get(name)
            if handler is None:
                continue
            handled = True
            try:
                handler(TykEvent(data), spec)
            except BaseException as e:
                if isinstance(e, KeyboardInterrupt):
                    raise
                self.log(
                    "python event handler '{0}' of bundle '{1}' raised:\n{2}".format(name, bundle.key, traceback.format_exc()),
                    "error",
                )
        if not handled:
            self.log("python driver: no event handler named '{0}'".format(name), "debug")
