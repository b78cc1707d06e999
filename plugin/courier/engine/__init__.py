"""engine: the workers.

Owns: worker threads that claim tasks, call transfer (fetch for job tasks) and delivery, and
record one attempt per task (workers); the pure retry decision after an attempt (policy).
May import everything below web.
"""
