"""The Python side of libcoprocess_python.so: loads Tyk Python bundles and runs their hooks.

One `Runtime` per driver instance. The Rust side calls `dispatch(bytes) -> bytes | str` (a str is an
error message), `event(json)`, `reload()`, `load_bundle(path) -> str | None` and `shutdown()`,
holding the GIL only for the duration of each call.

Each bundle is imported as its own package, `_coprocess_bundles.b<N>_<name>`, whose `__path__` is
the bundle directory. Its modules get a private `__builtins__` whose `__import__` resolves
`import helpers` to the bundle's own `helpers.py` first, then to the modules this runtime provides
(`tyk.decorators`, `gateway`, `coprocess_*_pb2`), then to the normal import system. So two bundles
may both ship `helpers.py`, no bundle puts anything on `sys.path`, and nothing named `tyk` or
`gateway` is added to `sys.modules` (a host that is itself Python keeps its own modules).
"""

import builtins
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


class Runtime(object):
    def __init__(self, host, descriptor_set, sources, bundle_root, python_path):
        self.host = host
        for p in reversed(python_path or []):
            if p not in sys.path:
                sys.path.insert(0, p)
        self._classes(descriptor_set)
        self.provided = self._provided_modules(sources)
        self.request_class = self.provided["tyk.request"].TykCoProcessRequest
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

    def _route(self, obj):
        bundles = self.bundles
        key = obj.spec.get("bundle_hash")
        if key:
            bundle = bundles.get(key)
            if bundle is None:
                raise BundleError("no bundle '{0}' is loaded (loaded: {1})".format(key, ", ".join(sorted(bundles)) or "none"))
            return bundle
        if len(bundles) == 1:
            return next(iter(bundles.values()))
        having = [b for b in bundles.values() if obj.hook_name in b.hooks]
        if len(having) == 1:
            return having[0]
        if not having:
            raise BundleError("no loaded bundle defines hook '{0}' and spec has no bundle_hash".format(obj.hook_name))
        raise BundleError(
            "hook '{0}' is defined by bundles {1}; spec[\"bundle_hash\"] must say which".format(
                obj.hook_name, ", ".join(sorted(b.key for b in having))
            )
        )

    def dispatch(self, data):
        """Runs the hook named by the Object; returns the serialized Object or an error message."""
        name, key = "?", "?"
        try:
            obj = self.Object.FromString(data)
            name = obj.hook_name
            bundle = self._route(obj)
            key = bundle.key
            if bundle.error is not None:
                return "bundle '{0}' failed to load: {1}".format(key, bundle.error)
            hook = bundle.hooks.get(name)
            if hook is None:
                return "bundle '{0}' has no hook '{1}' (it defines: {2})".format(
                    key, name, ", ".join(sorted(bundle.hooks)) or "none"
                )
            bad = getattr(hook, "bad_arity", None)
            if bad:
                return "bundle '{0}': {1}".format(key, bad)
            self._call(hook, obj)
            return obj.SerializeToString()
        except BundleError as e:
            return str(e)
        except BaseException as e:
            if isinstance(e, KeyboardInterrupt):
                raise
            self.log(
                "python hook '{0}' of bundle '{1}' raised:\n{2}".format(name, key, traceback.format_exc()),
                "error",
            )
            return "python hook '{0}' of bundle '{1}' raised {2} (traceback logged)".format(name, key, _describe(e))

    def _call(self, hook, obj):
        request_msg = obj.request
        session = obj.session
        metadata = obj.metadata
        request = self.request_class(request_msg)
        n = hook.arg_count
        if n == 3:
            result = hook(request, session, obj.spec)
            if result is not None:
                new_request, new_session = self._unpack(hook, result, 2, "(request, session)")
                self._adopt(request_msg, new_request)
                self._adopt(session, new_session)
        elif n == 4:
            result = hook(request, session, metadata, obj.spec)
            if result is not None:
                new_request, new_session, new_metadata = self._unpack(hook, result, 3, "(request, session, metadata)")
                self._adopt(request_msg, new_request)
                self._adopt(session, new_session)
                if new_metadata is not None and new_metadata is not metadata:
                    items = dict(new_metadata)
                    metadata.clear()
                    metadata.update(items)
            if obj.hook_type == self.CUSTOM_KEY_CHECK and len(metadata):
                # Tyk keeps the auth hook's metadata (e.g. "token") with the session it returns.
                session.metadata.update(dict(metadata))
        else:
            response = obj.response
            result = hook(request, response, session, metadata, obj.spec)
            self._adopt(response, result)

    @staticmethod
    def _unpack(hook, result, n, shape):
        if not isinstance(result, (tuple, list)) or len(result) != n:
            raise TypeError("hook '{0}' must return {1}, not {2!r}".format(hook.name, shape, type(result).__name__))
        return result

    def _adopt(self, target, value):
        """Copies what a hook returned into the Object unless it returned the object it was given."""
        if value is None:
            return
        if isinstance(value, self.request_class):
            value = value.object
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
