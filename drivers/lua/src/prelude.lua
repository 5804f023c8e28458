-- The Lua half of libcoprocess_lua.so: runs once in every Lua state the driver makes (state.rs hands
-- it `rt`, the Rust-side pieces) and returns the functions the driver calls: `run` (one hook call),
-- `load_bundle` and `functions_of`.
--
-- Each bundle gets its own environment: globals it defines stay in it, and it sees the standard
-- library, its own `tyk` table and a `require` that finds the bundle's own modules and cjson.
local rt = ...

local setmetatable, getmetatable, type, error, select, tostring =
  setmetatable, getmetatable, type, error, select, tostring
local raw_pairs, raw_next, raw_pcall, raw_xpcall = pairs, next, pcall, xpcall
local loadstring, setfenv, concat = loadstring, setfenv, table.concat

-- No JIT: a compiled loop never returns to the interpreter, where the per-call budget (an
-- instruction-count hook) is checked, so it could not be stopped. Bundles cannot turn it back on.
jit.off()
jit.flush()
local funcinfo = require("jit.util").funcinfo
jit = nil
for _, list in raw_pairs({ package.loaded, package.preload }) do
  for name in raw_pairs(list) do
    if name == "jit" or name:sub(1, 4) == "jit." then
      list[name] = nil
    end
  end
end

-- cjson raises its errors as strings, as lua-cjson does; cjson.safe returns nil and the message.
local cjson_safe = rt.cjson_safe
local cjson = {}
for k, v in raw_pairs(cjson_safe) do
  cjson[k] = v
end
cjson._NAME = "cjson"
function cjson.encode(value)
  local text, err = cjson_safe.encode(value)
  if err ~= nil then
    error(err, 2)
  end
  return text
end
function cjson.decode(text)
  local value, err = cjson_safe.decode(text)
  if err ~= nil then
    error(err, 2)
  end
  return value
end

local REQUEST_MT, SESSION_MT, RESPONSE_MT, SPEC_MT = rt.request_mt, rt.session_mt, rt.response_mt, rt.spec_mt
local LAZY, fill, spent, log = rt.lazy, rt.fill, rt.budget_spent, rt.log

-- The request table of the hook call in progress: tyk.req works on it.
local current

local function lazy(t)
  return type(t) == "table" and getmetatable(t) == LAZY
end

-- A protected call must not swallow the error that ends a call over its budget.
local function guard(ok, ...)
  if not ok and spent() then
    error((...), 0)
  end
  return ok, ...
end

local function current_request()
  if current == nil then
    error("tyk.req is only available while a hook runs", 3)
  end
  return current
end

-- tyk.req, as in Tyk's bundle.lua (clear_header adds to delete_headers instead of replacing it).
local req = {}
function req.get_headers()
  return current_request().headers
end
function req.set_header(key, value)
  local r = current_request()
  local set = r.set_headers
  if set == nil then
    set = {}
    r.set_headers = set
  end
  set[key] = value
end
function req.clear_header(key)
  local r = current_request()
  local list = r.delete_headers
  if list == nil then
    list = {}
    r.delete_headers = list
  end
  list[#list + 1] = key
end
function req.start_time() end
function req.http_version() end

local TYK_MT = {
  -- tyk.header: the request's headers (bundle.lua's commented-out `tyk.header`).
  __index = function(_, key)
    if key == "header" and current ~= nil then
      return current.headers
    end
  end,
}

local function new_tyk()
  return setmetatable({
    req = setmetatable({}, { __index = req }),
    session = {},
    log = rt.log,
    store_data = rt.store_data,
    get_data = rt.get_data,
    trigger_event = rt.trigger_event,
  }, TYK_MT)
end

local function copy(t)
  local c = {}
  for k, v in raw_pairs(t) do
    c[k] = v
  end
  return c
end

-- What every bundle environment falls back to.
local base = copy(_G)
base._G = nil
base.pairs = function(t)
  if lazy(t) then
    fill(t)
  end
  return raw_pairs(t)
end
base.next = function(t, k)
  if k == nil and lazy(t) then
    fill(t)
  end
  return raw_next(t, k)
end
base.pcall = function(f, ...)
  return guard(raw_pcall(f, ...))
end
base.xpcall = function(f, handler, ...)
  return guard(raw_xpcall(f, handler, ...))
end
base.coroutine = copy(coroutine)
local resume = coroutine.resume
base.coroutine.resume = function(co, ...)
  return guard(resume(co, ...))
end
base.os = copy(os)
base.os.exit = function()
  error("os.exit would stop the gateway: it is disabled for plugins", 2)
end
base.print = function(...)
  local parts = {}
  for i = 1, select("#", ...) do
    parts[i] = tostring((select(i, ...)))
  end
  log(concat(parts, "\t"), "info")
end
local BASE_MT = { __index = base }

-- Loads a bundle: `files` is a list of {name, source} (the manifest's .lua files, in order), each run
-- once in the bundle's environment; `require "a.b"` runs `a/b.lua` of the list (once).
local function load_bundle(key, files)
  local env = setmetatable({}, BASE_MT)
  env._G = env
  env.tyk = new_tyk()
  local modules, loaded = {}, {}
  local function module_name(file)
    return (file:gsub("^%./", ""):gsub("%.lua$", ""):gsub("/", "."))
  end
  for i = 1, #files do
    modules[module_name(files[i][1])] = files[i]
  end
  local function run_file(file)
    local chunk, err = loadstring(file[2], "@" .. key .. "/" .. file[1])
    if chunk == nil then
      error(err, 0)
    end
    setfenv(chunk, env)
    return chunk()
  end
  env.require = function(name)
    local value = loaded[name]
    if value ~= nil then
      return value
    end
    if name == "cjson" then
      return cjson
    elseif name == "cjson.safe" then
      return cjson_safe
    end
    local file = modules[name]
    if file ~= nil then
      loaded[name] = true
      value = run_file(file)
      if value == nil then
        value = true
      end
      loaded[name] = value
      return value
    end
    value = package.loaded[name]
    if value ~= nil and name ~= "_G" then
      return value
    end
    error("module '" .. tostring(name) .. "' not found in bundle '" .. key
      .. "' (modules are the .lua files of the manifest's file_list)", 2)
  end
  for i = 1, #files do
    local name = module_name(files[i][1])
    if loaded[name] == nil then
      loaded[name] = true
      local value = run_file(files[i])
      if value == nil then
        value = true
      end
      loaded[name] = value
    end
  end
  return env
end

-- The names of the functions a bundle defined (its hooks and event handlers).
local function functions_of(env)
  local names = {}
  for k, v in raw_pairs(env) do
    if type(k) == "string" and type(v) == "function" and k ~= "require" then
      names[#names + 1] = k
    end
  end
  return names
end

-- How a hook is called, from its declared parameters: (request, session, spec) with 3,
-- (request, session, metadata, spec) with 4, (request, response, session, metadata, spec) with 5;
-- otherwise as the hook type says.
local arities = setmetatable({}, { __mode = "k" })
local function arity(f, default)
  local n = arities[f]
  if n == nil then
    local info = funcinfo(f)
    n = info.params or 0
    if info.isvararg or n < 3 or n > 5 then
      n = 0
    end
    arities[f] = n
  end
  if n == 0 then
    return default
  end
  return n
end

-- One hook call. Returns the form used, the tables given, and what the hook returned.
local function run(hook, default_arity)
  local request = setmetatable({}, REQUEST_MT)
  local session = setmetatable({}, SESSION_MT)
  local spec = setmetatable({}, SPEC_MT)
  local n = arity(hook, default_arity)
  current = request
  if n == 3 then
    local r, s = hook(request, session, spec)
    current = nil
    return 3, request, session, nil, nil, r, s, nil
  end
  local metadata = rt.metadata()
  if n == 4 then
    local r, s, m = hook(request, session, metadata, spec)
    current = nil
    return 4, request, session, nil, metadata, r, s, m
  end
  local response = setmetatable({}, RESPONSE_MT)
  local r = hook(request, response, session, metadata, spec)
  current = nil
  return 5, request, session, response, metadata, r, nil, nil
end

-- An event handler call: `tyk.req` is not available in it.
local function event(handler, ev, spec)
  current = nil
  handler(ev, spec)
end

return { run = run, load_bundle = load_bundle, functions_of = functions_of, event = event }
