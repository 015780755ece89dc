-- Example plugin for DeepSeek-Ollama Bridge (the original bridge's plugin.lua API, DESIGN §10).
-- Both functions are required. Headers are tables with lower-case names; bodies are strings.
-- Loaded with --enable-luajit (the name is kept from the original; the VM is fengari, Lua 5.3).

-- Called for every request before it is proxied (and before the cache is consulted).
-- Return true, request to continue with the (possibly changed) request,
-- or false, response to answer at once.
function HandleServerRequest(request)
  print("request: " .. request.method .. " " .. request.path)

  if request.path == "/blocked" then
    return false, {
      status_code = 403,
      body = "Access denied by Lua middleware",
      headers = { ["content-type"] = "text/plain" },
    }
  end

  request.headers["x-modified-by"] = "lua-plugin"
  return true, request
end

-- Called for every answer going to a client, cache hits included. For streamed answers
-- response.body is nil: only the status and headers can be changed.
function HandleServerResponse(response)
  response.headers["x-powered-by"] = "deepseek-ollama-bridge"

  local content_type = response.headers["content-type"] or ""
  if response.body ~= nil and content_type:find("text/plain", 1, true) then
    response.body = response.body .. "\n-- processed by the Lua plugin"
  end
  return response
end
