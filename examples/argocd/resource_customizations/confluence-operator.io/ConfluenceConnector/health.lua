-- Health of a confluence-operator.io ConfluenceConnector. Lua 5.1 as Argo CD runs it:
-- no string library, every field nil-guarded. First match wins (operator conventions):
-- being deleted, no status yet, generation not yet observed, suspended, failed,
-- in progress, ready.
local hs = {}

local function condition(conditions, type_)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local function describe(c)
  local text = ""
  if c.reason ~= nil then
    text = c.reason
  end
  if c.message ~= nil and c.message ~= "" then
    if text ~= "" then
      text = text .. ": "
    end
    text = text .. c.message
  end
  return text
end

local meta = obj.metadata or {}
local spec = obj.spec or {}
local status = obj.status

if meta.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Pending deletion"
  if meta.finalizers ~= nil and #meta.finalizers > 0 then
    hs.message = hs.message .. ", waiting for finalizers: " .. table.concat(meta.finalizers, ", ")
  end
  return hs
end

-- The CRD defaults status to {observedGeneration: -1}, so "no status" also means no
-- condition written yet.
if status == nil or status.conditions == nil or #status.conditions == 0 then
  hs.status = "Progressing"
  hs.message = "Waiting for controller"
  return hs
end

local ready = condition(status.conditions, "Ready")
local stalled = condition(status.conditions, "Stalled")
local reconciling = condition(status.conditions, "Reconciling")

-- The operator advances observedGeneration only when a generation reaches an end
-- state, so this is also where the first sync of a generation shows.
if meta.generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < meta.generation) then
  hs.status = "Progressing"
  if reconciling ~= nil and reconciling.status == "True" then
    hs.message = describe(reconciling)
  else
    hs.message = "Waiting for the controller to observe generation " .. meta.generation
  end
  return hs
end

if spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "Syncing is suspended"
  return hs
end

if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end
if ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
  hs.message = describe(ready)
  return hs
end

if (reconciling ~= nil and reconciling.status == "True") or (ready ~= nil and ready.status == "Unknown") then
  hs.status = "Progressing"
  if reconciling ~= nil and reconciling.status == "True" then
    hs.message = describe(reconciling)
  else
    hs.message = describe(ready)
  end
  return hs
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  -- The counts of the last successful sync; Ready's message may describe a routine
  -- sync that is running now.
  local summary = status.summary
  if summary ~= nil then
    hs.message = (ready.reason or "Ready") .. ": " .. (summary.users or 0) .. " users, " ..
      (summary.groups or 0) .. " groups, " .. (summary.spaces or 0) .. " spaces"
  else
    hs.message = describe(ready)
  end
  return hs
end

hs.status = "Progressing"
hs.message = "Waiting for the Ready condition"
return hs
