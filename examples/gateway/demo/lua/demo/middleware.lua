-- The demo gateway's Lua API (apps/lua.json, listen path /lua/), run by libcoprocess_lua.so.
-- Hooks are global functions named in the API definition, written as for Tyk's Lua support.

local function header(request, name)
  for k, v in pairs(request.headers or {}) do
    if k:lower() == name:lower() then
      return v
    end
  end
end

-- Pre: as in Tyk's Lua plugin demo.
function MyPreMiddleware(request, session, spec)
  tyk.req.set_header("myluaheader", "myluavalue")
  return request, session
end

-- CustomKeyCheck: "Bearer lua-token" gets a session the bridge caches for 30 s (the ID extractor
-- reads Authorization); anything else is answered 403.
function LuaAuth(request, session, metadata, spec)
  if header(request, "Authorization") == "Bearer lua-token" then
    session.rate = 100
    session.per = 1
    session.alias = "lua-demo-user"
    session.id_extractor_deadline = os.time() + 30
    metadata.token = "lua-token"
    tyk.req.set_header("X-Lua-Auth-Call", "1")
    tyk.log("lua demo: key accepted", "info")
  else
    request.return_overrides.response_code = 403
    request.return_overrides.response_error = "Key not authorised"
  end
  return request, session, metadata
end

-- Post: sees the session the auth hook made (or the cached one).
function MyPostMiddleware(request, session, spec)
  tyk.req.set_header("X-Lua-Alias", session.alias or "none")
  tyk.req.set_header("X-Lua-Api", spec.APIID)
  return request, session
end
