-- Courier's one Lua file (Courier is Lua-free otherwise: see the README's "DICOM traffic log").
--
-- Orthanc 1.10.1 tells a plugin nothing about the C-FINDs it serves; its Lua engine calls
-- IncomingFindRequestFilter(query, origin) before each one. This posts the C-FIND to Courier's
-- internal route (calling AE, called AE, IP and the query level: never the query's keys, which
-- hold patient names and IDs), and gives Orthanc the query back unchanged: in 1.10.1 the filter
-- must return the query (a table), and what it returns is what Orthanc searches for. A failed
-- post only logs an error in Orthanc's log (RestApiPost returns nil); the C-FIND goes on.
-- Orthanc keeps one IncomingFindRequestFilter: another Lua script defining one replaces this.
function IncomingFindRequestFilter(query, origin)
  RestApiPost('/courier/traffic/events', DumpJson({
    Service = 'C-FIND',
    CallingAet = origin['RemoteAet'] or '',
    CalledAet = origin['CalledAet'] or '',
    RemoteIp = origin['RemoteIp'] or '',
    Level = query['0008,0052'] or ''
  }, true))
  return query
end

-- A C-MOVE Orthanc serves is a job of its own when orthanc.json sets "SynchronousCMove": false
-- (type DicomModalityStore, description "C-MOVE"); when one ends, Courier is told the job's id and
-- reads the rest (originator, destination, counts) itself. Courier's own sends end as jobs too:
-- they are told apart here, with one call to Orthanc's REST API, and not posted.
local function CourierJobEnded(jobId)
  local job = ParseJson(RestApiGet('/jobs/' .. jobId))
  if job and job['Type'] == 'DicomModalityStore' and job['Content'] and job['Content']['Description'] == 'C-MOVE' then
    RestApiPost('/courier/traffic/events', DumpJson({ Service = 'C-MOVE', Job = jobId }, true))
  end
end

function OnJobSuccess(jobId)
  CourierJobEnded(jobId)
end

function OnJobFailure(jobId)
  CourierJobEnded(jobId)
end
