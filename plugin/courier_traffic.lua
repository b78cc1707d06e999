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
