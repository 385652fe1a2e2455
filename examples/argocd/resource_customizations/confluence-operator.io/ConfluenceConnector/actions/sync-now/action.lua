-- Request a sync now: a new value of the trigger annotation (the current UTC time).
-- Only metadata changes, so the object's generation and Argo CD's diff of spec stay
-- as they were; the operator echoes the value to status.lastHandledSyncRequest.
if obj.metadata == nil then
  obj.metadata = {}
end
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["confluence-operator.io/sync-requested-at"] = os.date("!%Y-%m-%dT%H:%M:%SZ")
return obj
