"""engine: the workers.

Owns: worker threads that claim tasks, call transfer (fetch for job tasks) and delivery, and
record one attempt per task (workers); the pure retry decision after an attempt (policy); the
scheduler, the periodic echoes, and the runtime configuration applied to the running parts
(runtime).
May import everything below web.
"""
