-- Argo CD health check for pgpart.io/PartitionPolicy
-- (argocd-cm key resource.customizations.health.pgpart.io_PartitionPolicy).
--
-- pgpart writes kstatus-style conditions (docs/reference.md): Ready, Reconciling and
-- Stalled (abnormal-true), plus DefaultPartitionEmpty, each with observedGeneration.
--   Healthy      Ready=True for the current generation
--   Progressing  no status yet, status for an older generation, Reconciling=True
--                (Progressing, RetryingAfterError), Ready=False otherwise, or deleting
--                (message "Deleting")
--   Degraded     Stalled=True: only a person can fix it (InvalidPolicy, TableMissing,
--                PolicyMismatch, Conflict, PermissionDenied, RowsInDefault, ...)
--   Suspended    spec.suspend is true, or Ready=False with reason Suspended or DryRun
--                (actions are pending and pgpart was told not to run them)
-- Plain Lua 5.1 (Argo CD runs gopher-lua), no libraries beyond the base ones.
local hs = {}

if obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Deleting"
  return hs
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end

local st = obj.status
if st == nil or (st.observedGeneration == nil and st.conditions == nil) then
  hs.status = "Progressing"
  hs.message = "Waiting for pgpart to reconcile the policy"
  return hs
end

if generation ~= nil and (st.observedGeneration == nil or st.observedGeneration < generation) then
  hs.status = "Progressing"
  if st.observedGeneration == nil then
    hs.message = "Waiting for pgpart to observe generation " .. tostring(generation)
  else
    hs.message = "Waiting for pgpart to observe generation " .. tostring(generation)
      .. " (status is for generation " .. tostring(st.observedGeneration) .. ")"
  end
  return hs
end

-- Conditions of this generation only: one written for an older spec says nothing
-- about the current one.
local conditions = {}
if st.conditions ~= nil then
  for _, c in ipairs(st.conditions) do
    if c.type ~= nil and (generation == nil or c.observedGeneration == nil
        or c.observedGeneration >= generation) then
      conditions[c.type] = c
    end
  end
end

local function describe(c)
  local reason = c.reason or ""
  local message = c.message or ""
  if reason == "" then
    return message
  end
  if message == "" then
    return reason
  end
  return reason .. ": " .. message
end

local ready = conditions["Ready"]
local reconciling = conditions["Reconciling"]
local stalled = conditions["Stalled"]
local defaultEmpty = conditions["DefaultPartitionEmpty"]

if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end

-- Working on it, or retrying after an error that may clear by itself (even when
-- suspended: pgpart still observes, and a failing observation is worth seeing).
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(reconciling)
  return hs
end

local suspend = obj.spec ~= nil and obj.spec.suspend == true
if suspend or (ready ~= nil and ready.status == "False"
    and (ready.reason == "Suspended" or ready.reason == "DryRun")) then
  hs.status = "Suspended"
  if ready ~= nil and ready.status == "False" then
    hs.message = describe(ready)
  elseif ready ~= nil and ready.message ~= nil and ready.message ~= "" then
    hs.message = "Suspended: " .. ready.message
  else
    hs.message = "Suspended"
  end
  return hs
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or ""
  -- Rows in the default partition that block nothing (yet): healthy, but say so.
  if defaultEmpty ~= nil and defaultEmpty.status == "False" and defaultEmpty.message ~= nil then
    if hs.message == "" then
      hs.message = defaultEmpty.message
    else
      hs.message = hs.message .. "; " .. defaultEmpty.message
    end
  end
  return hs
end

hs.status = "Progressing"
if ready ~= nil then
  hs.message = describe(ready)
else
  hs.message = "Waiting for the Ready condition"
end
return hs
