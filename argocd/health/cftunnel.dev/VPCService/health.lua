-- Argo CD health check for cftunnel.dev VPCService objects.
--
-- Healthy      Ready is True for the current generation.
-- Progressing  the operator has not reported on the current generation yet (no status, or a
--              stale observedGeneration), or Ready is False or Unknown for a reason that
--              clears by itself (the tunnel is being set up, Cloudflare is busy, pods start).
-- Degraded     Ready is False for a reason a person must fix (credentials, permissions, a
--              tunnel that does not exist or is not allowed, an invalid spec).
-- The message is the Ready condition's.
local hs = {status = "Progressing", message = "Waiting for the operator to report status"}

local transientReasons = {
  Progressing = true,
  WaitingForTunnel = true,
  TunnelNotReady = true,
  ReplicasUnavailable = true,
  CloudflareUnavailable = true,
  RateLimited = true,
  Deleting = true,
  InUseByVPCServices = true,
}

local function findCondition(conditions, conditionType)
  if conditions == nil then
    return nil
  end
  for _, condition in ipairs(conditions) do
    if condition.type == conditionType then
      return condition
    end
  end
  return nil
end

local function describe(condition, fallback)
  if condition.message ~= nil and condition.message ~= "" then
    return condition.message
  end
  if condition.reason ~= nil and condition.reason ~= "" then
    return condition.reason
  end
  return fallback
end

local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
local status = obj.status
if status == nil then
  return hs
end
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local ready = findCondition(status.conditions, "Ready")
if ready == nil then
  return hs
end
if generation ~= nil and ready.observedGeneration ~= nil and ready.observedGeneration < generation then
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "Ready")
elseif ready.status == "False" and not transientReasons[ready.reason] then
  hs.status = "Degraded"
  hs.message = describe(ready, "Not ready")
else
  hs.message = describe(ready, "Not ready yet")
end
return hs
