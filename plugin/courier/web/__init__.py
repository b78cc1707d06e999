"""web: what people and other programs see.

Owns: the route table, dispatch and OpenAPI document (routes), the services handlers share and
request helpers (http), what each POST reads (bodies) and how it is checked (schema, pure: the
bounded JSON parser and the validator), access rules (access, pure) and their application
(guard), the REST handlers by area (api_status, api_tasks, api_audit, api_traffic, api_routes, api_jobs,
api_batches, api_deid, api_quarantine, api_nodes), the UI pages (ui; templates and static files in the top-level web/
folder) and Prometheus metrics (metrics). May import everything below app.
"""
