-- "Sync now" is offered unless the connector is suspended (a suspended connector
-- does not sync, so the request would only wait).
local actions = {}
local suspended = obj.spec ~= nil and obj.spec.suspend == true
actions["sync-now"] = {["disabled"] = suspended}
return actions
