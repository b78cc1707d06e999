"""Worker threads: claim tasks, fetch what job tasks need (transfer), deliver (delivery), record
the outcome that policy.decide() picks.

A worker claims due tasks for one destination (routed tasks in a batch, so many small Instance
tasks share one association; a job task alone), holds a slot of that destination until its send
returns (MaxWorkersPerDestination counts slots, so a hung destination never takes every worker),
sends every instance not yet acknowledged, and records one Attempt per task. Cancel, pause and
stop are asked between instances and while a batch is in flight. A heartbeat thread keeps
RUNNING tasks and slots alive; those of a dead worker or a killed router are put back (at
start-up for this node, and whenever a heartbeat is older than the limit).
"""
from __future__ import annotations

import contextlib
import datetime
import logging
import os
import threading
import time
import uuid
from collections import Counter
from typing import Callable, Iterator, Mapping, Optional, Sequence

from courier import threads
from courier.config import windows
from courier.config.modify import parse_modify
from courier.config.parse import CourierConfig
from courier.deid.for_tasks import TaskPseudonymizers
from courier.deid.pseudonymizer import Pseudonymizer
from courier.delivery import dcmtk_store
from courier.delivery.deliver import Deliverer, Delivery
from courier.delivery.manifest import LEVEL_PATHS, manifests_of
from courier.delivery.modify import Modifier
from courier.delivery.sender import Sender
from courier.engine.policy import decide
from courier.errors import DeliveryError
from courier.orthanc_rest import OrthancRest
from courier.store.records import FINAL_STATES, PENDING, RUNNING, SUCCESS, Attempt, ManifestItem, Task
from courier.store.store import Store
from courier.transfer.remote import echo
from courier.transfer.retrieve import Retriever

log = logging.getLogger("courier.engine")

PRECHECK_RETRY_SECONDS = 30.0
TOP_UP_STEP = 0.05       # seconds: a batch of Courier's bytes is topped up in steps while each brings more
TOP_UP_STEPS = 10        # and for at most this many steps (0.5 s)
BEHIND_A_SEND_BELOW = 10  # a pass-through batch this short waits behind a send in flight; a longer one goes
SWEEP_SECONDS = 10.0     # how often a worker deletes what cancelled job tasks fetched
PRUNE_SECONDS = 3600.0


class JobModifiers:
    """The Modify of a job, read with each delivery of one of its studies (a job task comes alone,
    so this is one small query a study; never cached: a deleted job's id may be given again)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def of(self, job_id: int) -> Optional[Modifier]:
        spec = self.store.jobs.modify_of(job_id)
        return Modifier(parse_modify(spec, "Modify")) if spec else None


class Engine:
    def __init__(self, config: CourierConfig, store: Store, rest: OrthancRest, senders: Mapping[str, Sender],
                 pseudonymizers: Mapping[str, Pseudonymizer] = {}, clock: Callable[[], float] = time.time,
                 hooks: Mapping[str, Callable] = {}) -> None:
        self.config, self.store, self.rest, self.clock = config, store, rest, clock
        self.node = f"{config.router_name}:"
        self.incarnation = f"{self.node}{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._wake = threading.Condition()
        self._wakes = 0                          # wake-ups so far: one that came during a claim is not lost
        self._threads: list[threading.Thread] = []
        self._topping: set[str] = set()          # destinations a worker is topping a batch up for (_topped_up)
        self._lock = threading.Lock()                # guards _topping, _sending and _swept_at
        self._sending: Counter[str] = Counter()  # destination -> this router's batches of routed tasks in flight
        self._sent = threading.Condition(self._lock)    # notified when one of them has been sent
        self._swept_at = 0.0                     # when cancelled fetches were last deleted (monotonic)
        self._unsettled: dict[str, Exception] = {}   # worker -> the error whose tasks are not yet recorded (_settled)
        self.running = False
        self.reconfigure(config, senders, pseudonymizers, hooks)

    def reconfigure(self, config: CourierConfig, senders: Mapping[str, Sender],
                    pseudonymizers: Mapping[str, Pseudonymizer], hooks: Mapping[str, Callable] = {}) -> None:
        """A runtime configuration change: batches claimed from now on use the new senders,
        profiles and Modify; a batch in flight ends with those it started with. The number of
        workers and the router's name stay as started. `hooks`: each route's Modify script."""
        self.retriever = Retriever(config, self.store, self.rest, self._stop.is_set)
        routes = {r.name: Modifier(r.modify, hooks.get(r.name)) for r in config.routes if r.modify}
        self._modified_routes = frozenset(routes)
        jobs = JobModifiers(self.store)
        self.deliverer = Deliverer(self.store, self.rest, senders, TaskPseudonymizers(self.store, pseudonymizers),
                                   lambda task: jobs.of(task.job_id) if task.job_id else routes.get(task.route))
        self.config = config

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        requeued = self.store.tasks.requeue_abandoned(self.node, self.config.heartbeat_timeout)
        if requeued:
            log.warning("requeued %d task(s) left RUNNING by a previous run", requeued)
        for index in range(self.config.workers):
            self._spawn(f"courier-worker-{index}", self._work_loop, f"{self.incarnation}:w{index}")
        self._spawn("courier-heartbeat", self._heartbeat_loop)
        self._spawn("courier-retention", self._retention_loop)
        self.running = True

    def _spawn(self, name: str, target: Callable, *args) -> None:
        thread = threads.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        """Workers end their sends and fetches (cancelling Orthanc's jobs in flight) and put their
        tasks back; whatever is still RUNNING for this process after `timeout` is put back too, so
        that a graceful stop leaves nothing RUNNING."""
        self.running = False
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self.store.tasks.requeue_abandoned(self.incarnation, float("inf"), reason="router stopping")
        dcmtk_store.tidy(0)
        self.store.routers.stopped(self.config.router_name, self.incarnation)

    def wake(self) -> None:
        """There may be work: one idle worker looks. A worker that claims something wakes the next
        before it works (there may be more), one that finds nothing wakes nobody: a burst of
        changes no longer sends every idle worker to a claim that all but one lose (measured: 2309
        claim transactions for 318 batches of a 1000-instance burst). Idle workers also look every
        second, and when a retry falls due."""
        with self._wake:
            self._wakes += 1
            self._wake.notify()

    # -- loops ------------------------------------------------------------------------------
    def _work_loop(self, owner: str) -> None:
        while not self._stop.is_set():
            with self._wake:
                wakes = self._wakes
            try:
                busy = self._settled(owner) and self.run_once(owner)
            except Exception as exc:
                log.exception("worker %s: unexpected error; continuing", owner)
                self._unsettled.setdefault(owner, exc)
                self._settled(owner)
                busy = False
            if busy:
                self.wake()                  # a destination slot is free again: an idle worker looks
                continue
            # Idle. Tasks may be due but held by MaxWorkersPerDestination: wait to be woken (new
            # tasks, a finished batch) rather than poll, or until the next retry falls due. A wake-up
            # that came while this worker claimed is not waited for: its claim may have looked just
            # before the new tasks were committed (a claim that can change nothing only reads).
            try:
                dcmtk_store.tidy()           # scratch folders a burst left in RAM, once unused for a while
                due_in = self.store.tasks.next_due_in()
            except Exception:                # the store failing too: look again in a second, never end the worker
                log.exception("worker %s: looking for the next retry failed", owner)
                due_in = None
            with self._wake:
                if not self._stop.is_set() and self._wakes == wakes:
                    self._wake.wait(timeout=due_in if due_in and due_in < 1.0 else 1.0)

    def _settled(self, owner: str) -> bool:
        """After an unexpected error in a claim (a defect, the store failing for a moment): what
        the worker still holds RUNNING is recorded as a failed attempt naming the error's type
        (never its message, which may quote a tag value), retried with Courier.Retry's backoff
        and then FAILURE (WARNING if some was delivered), and its destination slot is freed.
        Never left RUNNING until a restart: the worker's heartbeat would keep it from being taken
        for abandoned. Until that is recorded (False: the store failed too; tried again at the
        worker's next round) the worker claims nothing more."""
        error = self._unsettled.get(owner)
        if error is None:
            return True
        try:
            held = self.store.tasks.held_by(owner)
            manifests = self.store.tasks.manifests([t.id for t in held])
            why = f"unexpected error in Courier ({type(error).__name__}; Orthanc's log has its traceback)"
            attempts = [self._attempt(t, [], 0, len(manifests[t.id]), sum(i.delivered for i in manifests[t.id]), why)
                        for t in held]
            for attempt in attempts:          # a job task's fetched study goes if this attempt was its last
                if attempt.task.source:
                    self._finish_job_task(owner, attempt.task, attempt)
            self.store.tasks.finish_attempts(owner, [a for a in attempts if not a.task.source], release_slot=True)
        except Exception:
            log.exception("worker %s: the tasks it held could not be recorded yet", owner)
            return False
        del self._unsettled[owner]
        if held:
            log.warning("worker %s: %d task(s) it held recorded as failed attempts", owner, len(held))
        return True

    def _heartbeat_loop(self) -> None:
        interval = max(1.0, self.config.heartbeat_timeout / 4)
        while not self._stop.wait(interval):
            try:
                self.store.routers.heartbeat(self.config.router_name, self.incarnation)
                for thread_index in range(self.config.workers):
                    self.store.tasks.heartbeat(f"{self.incarnation}:w{thread_index}")
                # another router's (or a hung) worker whose heartbeat stopped
                if self.store.tasks.requeue_abandoned(None, self.config.heartbeat_timeout,
                                                      reason="heartbeat lost: its worker or its router is gone"):
                    self.wake()
            except Exception:
                log.exception("heartbeat failed")

    def _retention_loop(self) -> None:
        """RetentionDays, once an hour, on a thread of its own: a long first prune never delays the
        heartbeats (other routers would take this one's tasks for abandoned)."""
        keep = [f.id for f in self.config.imports.values() if f.after == "Keep"]
        while not self._stop.wait(max(1.0, self.config.heartbeat_timeout / 4)):
            try:
                self.store.retention.prune(self.config.retention_days, keep_sources=keep)
            except Exception:
                log.exception("pruning what is older than RetentionDays failed")
            if self._stop.wait(PRUNE_SECONDS):
                return

    def closed_sources(self) -> list[str]:
        """Nodes outside all their time windows right now: their transfers wait."""
        now = datetime.datetime.fromtimestamp(self.clock())
        return [node for node, settings in self.config.node_settings.items()
                if not settings.enabled or (settings.windows and not windows.is_open(settings.windows, now))]

    # -- one claim --------------------------------------------------------------------------
    def run_once(self, owner: str) -> bool:
        """Claim, work, record every outcome. False if there was nothing to claim."""
        if self._sweep_due():
            self.wake()                              # up to 100 deletes: another worker claims meanwhile
            self.delete_cancelled_fetches()          # what cancelled job tasks fetched goes
        claim = self.store.tasks.claim(owner, self.config.batch_size, self.config.max_workers_per_destination,
                                       self.closed_sources(),
                                       {n: s.max_parallel_tasks for n, s in self.config.node_settings.items()},
                                       stale_after=self.config.heartbeat_timeout,
                                       held_destinations=sorted(self.config.disabled | self._topping_now()),
                                       known=self._known())
        if claim is None:
            return False
        self.wake()                 # the next worker looks for more meanwhile
        released = False            # the destination slot is held until the send has returned
        try:
            gone = self._not_configured(claim.tasks)
            if gone:                # claimed just before a configuration change took it away
                self.store.tasks.release(owner, [t.id for t in claim.tasks], f"{gone} is no longer configured")
            elif claim.tasks and claim.tasks[0].source:
                self._run_job_task(owner, claim.tasks[0])
            elif claim.tasks:
                self._run_routed(owner, self._topped_up(owner, claim.destination, list(claim.tasks)))
                released = True     # with the outcomes, in their transaction
        finally:
            if not released:
                self.store.tasks.release_slot(owner)
        return True

    def _topping_now(self) -> set[str]:
        with self._lock:
            return set(self._topping)

    def _known(self) -> dict[str, list[str]]:
        """What tasks may name to be claimed: the configuration's destinations, nodes, profiles."""
        return {"destination": sorted(self.config.destinations), "source": sorted(self.config.nodes),
                "profile": sorted(self.config.profiles), "route": [r.name for r in self.config.routes]}

    def _not_configured(self, tasks: Sequence[Task]) -> Optional[str]:
        config = self.config
        for task in tasks:
            if task.destination not in config.destinations or task.destination not in self.deliverer.senders:
                return f"destination {task.destination!r}"
            if task.source and task.source not in config.nodes:
                return f"source {task.source!r}"
            if task.profile and task.profile not in config.profiles:
                return f"profile {task.profile!r}"
            if task.job_id is None and ":" not in task.route and task.route not in {r.name for r in config.routes}:
                return f"route {task.route!r}"
        return None

    def _topped_up(self, owner: str, destination: str, tasks: list[Task]) -> list[Task]:
        """A short batch of first attempts at Instance tasks, while instances are arriving, waits
        for more of the same destination, so that a burst goes in fewer, larger associations (each
        costs the destination ~3 ms) at the price of some latency:
        - with BatchLingerSeconds, that long, then what arrived meanwhile;
        - else, when Courier makes the bytes (a profile, a Modify) for a DICOM destination that
          storescu sends to (each batch is a storescu run then, or an association an instance
          below dcmtk_store.SMALLEST), in steps of TOP_UP_STEP, at most TOP_UP_STEPS: a lone
          instance (the first step brings nothing) waits one step; a burst (more than one) is
          waited for until the batch is worth a storescu run, then while each step brings more.
          Meanwhile this router's other workers leave the destination to this one, so that the
          burst is not split between them;
        - else, for stored instances that the sender sends in one call per batch (one Orthanc
          job: DICOM, DICOMweb, peers), a batch under BEHIND_A_SEND_BELOW, while another worker of
          this router is sending a batch to the same destination, until that send ends or
          BatchSize tasks are due (at most TOP_UP_STEPS x TOP_UP_STEP), then with what arrived
          meanwhile (_behind_a_send): a trickle goes in batches as large as a send is long, a page
          of a fast burst goes at once beside the send, and a lone instance, with nothing in
          flight, goes at once."""
        linger = self.config.batch_linger
        sender = self.deliverer.senders.get(destination)
        batches = getattr(sender, "batches", False)    # storescu: see above
        if len(tasks) >= self.config.batch_size or any(t.level != "Instance" or t.attempts for t in tasks):
            return tasks
        makes_bytes = any(self._makes_bytes(t) for t in tasks)
        if linger <= 0 and not (batches and makes_bytes):
            one_call = getattr(sender, "stored_in_one_call", False) and not makes_bytes     # else one call each
            return self._behind_a_send(owner, destination, tasks) if one_call else tasks
        if linger > 0:
            if self._stop.wait(linger):
                return tasks
            more = self.store.tasks.claim_more(owner, destination, self.config.batch_size - len(tasks), self._known())
            return sorted(tasks + more, key=lambda t: (-t.priority, t.id))
        with self._holding(destination) as held:
            steps, burst = 0, len(tasks) > 1
            while (held and len(tasks) < self.config.batch_size and steps < TOP_UP_STEPS
                   and not self._stop.wait(TOP_UP_STEP)):
                steps += 1
                more = self.store.tasks.claim_more(owner, destination, self.config.batch_size - len(tasks),
                                                   self._known())
                if not more and (not burst or len(tasks) >= dcmtk_store.SMALLEST):
                    break             # a lone instance, or a batch worth one storescu run: the burst paused
                burst = burst or bool(more)
                tasks += more
        return sorted(tasks, key=lambda t: (-t.priority, t.id))

    @contextlib.contextmanager
    def _holding(self, destination: str) -> Iterator[bool]:
        """The destination left to this worker while it tops a batch up (this router's other
        workers' claims skip it), then woken workers look again; False if another worker already
        holds it."""
        with self._lock:
            held = destination not in self._topping
            if held:
                self._topping.add(destination)
        if not held:
            yield False
            return
        try:
            yield True
        finally:
            with self._lock:
                self._topping.discard(destination)
            self.wake()                   # workers that found the destination held look again

    def _behind_a_send(self, owner: str, destination: str, tasks: list[Task]) -> list[Task]:
        """A short batch (under BEHIND_A_SEND_BELOW) claimed while this router sends another
        batch to the destination waits for that send to end, or until a full batch (BatchSize) is
        due, then takes what arrived
        meanwhile; the other workers leave the destination to this one meanwhile (measured on a
        burst of 1000 pass-through instances, a slow day: 263-326 store jobs of 3-4 instances
        without it, 193-326 with it; each one an association, an Orthanc job, and a dozen calls
        and transactions). Under a fast burst a page (10 or more) and a full batch go beside the
        send in flight, not after it: when every batch waited, a burst went one send at a time
        (receipt to delivery p50 470-730 ms against 170-295 ms, storescu sending 270/s)."""
        if len(tasks) >= BEHIND_A_SEND_BELOW:
            return tasks
        with self._lock:
            if not self._sending[destination]:
                return tasks
        with self._holding(destination) as held:
            if not held:
                return tasks
            deadline = time.monotonic() + TOP_UP_STEPS * TOP_UP_STEP
            while not self._stop.is_set() and time.monotonic() < deadline:
                with self._lock:
                    if self._sending[destination]:
                        self._sent.wait(min(TOP_UP_STEP, max(0.0, deadline - time.monotonic())))
                    if not self._sending[destination]:
                        break
                try:
                    due = self.store.tasks.due_count(destination, self.config.batch_size, self._known())
                except Exception:         # the store failed for a moment: send what was claimed
                    log.exception("counting the due tasks of %s failed; no longer waiting behind its send", destination)
                    break
                if len(tasks) + due >= self.config.batch_size:
                    break             # a full batch is there: it goes beside the send in flight
            if self._stop.is_set():
                return tasks
            try:
                more = self.store.tasks.claim_more(owner, destination, self.config.batch_size - len(tasks),
                                                   self._known())
            except Exception:             # the store failed for a moment: what was claimed goes as it is
                log.exception("topping up a batch for %s failed; sending the %d task(s) claimed", destination,
                              len(tasks))
                return tasks
        return sorted(tasks + more, key=lambda t: (-t.priority, t.id))

    def _makes_bytes(self, task: Task) -> bool:
        return task.profile is not None or task.route in self._modified_routes

    def _run_routed(self, owner: str, tasks: Sequence[Task]) -> None:
        """Routed tasks of one destination: list what each must deliver (once), send it all."""
        attempts: list[Attempt] = []
        manifests = self.store.tasks.manifests([t.id for t in tasks])
        fresh: dict[int, list[ManifestItem]] = {}
        listed = manifests_of(self.rest, [t for t in tasks if not manifests[t.id]])
        for task in tasks:
            if task.id not in listed:
                continue
            manifest = listed[task.id]
            if isinstance(manifest, DeliveryError):
                attempts.append(self._attempt(task, [], 0, 0, 0, f"cannot list the resource: {manifest}",
                                              manifest.retriable))
                continue
            fresh[task.id] = manifests[task.id] = manifest
            if not manifest:
                attempts.append(self._attempt(task, [], 0, 0, 0, "the resource has no instances", False))
        if fresh:
            self.store.tasks.save_manifests(fresh)
        ended = {attempt.task.id for attempt in attempts}
        ready = [t for t in tasks if t.id not in ended and manifests[t.id]]

        def cancelled() -> bool:        # stop when the router stops or every task of the batch was cancelled
            return self._stop.is_set() or self.store.tasks.running_of(owner) == 0
        why = "the router stopped"
        destination = tasks[0].destination if tasks else ""
        with self._lock:
            self._sending[destination] += 1
        try:
            deliveries = self.deliverer.deliver(ready, manifests, cancelled,
                                                lambda done: self.store.tasks.progress(owner, done))
        finally:
            with self._lock:
                self._sending[destination] -= 1
                self._sent.notify_all()
        attempts += [self._delivered(d, why) for d in deliveries]
        recorded = self.store.tasks.finish_attempts(owner, attempts, release_slot=True)
        for attempt in attempts:
            if attempt.state == SUCCESS and attempt.task.delete_after and attempt.task.id in recorded:
                self._delete_if_done(attempt.task)

    def _run_job_task(self, owner: str, task: Task) -> None:
        """One study (or series) of a job, in two claims: fetch it unless it is here (phase 'fetch',
        no slot of the destination held), then, once a slot is free, deliver it (phase 'send'), so
        that the next study is fetched while the last one is sent. A cancel ends the fetch or the
        send in flight; a pause lets the fetch in flight finish and stops the send, then puts the
        task back; a stop puts it back; neither counts as an attempt."""
        if task.phase == "send":
            self._send_fetched(owner, task)
            return
        if self.store.jobs.needs_check(task.job_id):
            problem = self._precheck(task)
            if problem:
                self.store.tasks.release(owner, [task.id], f"pre-check: {problem}")
            self.store.jobs.checked(task.job_id, problem, self.store.clock() + PRECHECK_RETRY_SECONDS)
            if problem:
                return
        if self.retriever.is_direct(task):           # the source sends to the destination itself
            attempt = self._direct_move(task)
        else:
            try:
                manifest = self.retriever.fetch(task)
            except DeliveryError as exc:
                if self._stop.is_set():
                    self.store.tasks.release(owner, [task.id], "router stopping")
                    return
                delivered = sum(i.delivered for i in self.store.tasks.manifests([task.id])[task.id])
                attempt = self._attempt(task, [], 0, task.expected or 0, delivered, f"fetch from {task.source}: {exc}",
                                        exc.retriable)
            else:
                if not manifest:          # another task of the job delivered all of it
                    attempt = Attempt(task, [], 0, SUCCESS, 0, None, None)
                else:                     # sent once a slot is free (after a resume, if the job is paused)
                    self.store.jobs.pause_after_study(task.job_id)
                    if self.store.tasks.fetched(owner, task.id):
                        self.wake()           # a worker with a free slot sends it; this one fetches the next
                    elif task.delete_after:   # cancelled while it was fetched
                        self._delete_fetched(task)
                    return
        self.store.jobs.pause_after_study(task.job_id)       # PauseBetweenStudiesSeconds spares the source
        self._finish_job_task(owner, task, attempt)

    def _send_fetched(self, owner: str, task: Task) -> None:
        """The second claim of a job task: its study is here, its manifest recorded; send it."""
        def interrupted() -> bool:
            return (self._stop.is_set() or self.store.tasks.state_of(task.id) != RUNNING
                    or self.store.jobs.is_paused(task.job_id))
        manifest = self.store.tasks.manifests([task.id])[task.id]
        (delivery,) = self.deliverer.deliver([task], {task.id: manifest}, interrupted,
                                             lambda done: self.store.tasks.progress(owner, done))
        self._finish_job_task(owner, task, self._delivered(delivery, "the router stopped" if self._stop.is_set()
                                                           else "job paused"))

    def _finish_job_task(self, owner: str, task: Task, attempt: Attempt) -> None:
        recorded = self.store.tasks.finish_attempts(owner, [attempt])
        if task.delete_after and (attempt.state in FINAL_STATES or task.id not in recorded):
            self._delete_fetched(task)          # fetched only for this transfer: do not keep it

    def _sweep_due(self) -> bool:
        with self._lock:
            now = time.monotonic()
            if now - self._swept_at < SWEEP_SECONDS:
                return False
            self._swept_at = now
            return True

    def delete_cancelled_fetches(self) -> None:
        """Studies fetched for job tasks that were cancelled before they were sent: deleted (the
        task stays marked in the store until this is done, so a restart or a failed DELETE does
        not forget them)."""
        for task in self.store.tasks.cancelled_fetched():
            if not task.delete_after or self._delete_fetched(task):
                self.store.tasks.forget_fetched(task.id)

    def _precheck(self, task: Task) -> Optional[str]:
        """Before a job's first study: do its source and its destination answer (C-ECHO, or a QIDO or
        /system call)? The reason if not, so the job shows it instead of N failed tasks."""
        for node_id, role in ((task.source, "source"), (task.destination, "destination")):
            node = self.config.nodes.get(node_id)
            settings = self.config.node_settings.get(node_id)
            if node is None or (node.kind == "dicom" and "C-ECHO" not in settings.capabilities):
                continue
            ok, message = echo(self.rest, node.id, node.kind)
            self.store.nodes.record_echo(node.id, ok, message, "courier")
            if not ok:
                return f"the {role} {node.id} does not answer: {message}"
        return None

    def _delivered(self, d: Delivery, why: str) -> Attempt:
        """The attempt a delivery makes; one that was interrupted (not cancelled: finish_attempts
        leaves a cancelled task alone) goes back to PENDING at once, not counted."""
        if d.interrupted:
            return Attempt(d.task, d.newly_delivered, d.failed, PENDING, d.expected, 0.0, f"interrupted: {why}",
                           interrupted=True)
        return self._attempt(d.task, d.newly_delivered, d.failed, d.expected, d.delivered, d.error, d.retriable)

    def _direct_move(self, task: Task) -> Attempt:
        try:
            moved = self.retriever.direct_move(task)
        except DeliveryError as exc:
            expected = len(self.store.tasks.manifests([task.id])[task.id])     # listed before the move failed
            return self._attempt(task, [], 0, expected, 0, f"direct C-MOVE from {task.source}: {exc}", exc.retriable)
        return self._attempt(task, moved.arrived, moved.missing, moved.expected, len(moved.arrived),
                             f"{moved.missing} instance(s) not found at {task.destination} after the C-MOVE"
                             if moved.missing else None)

    def _attempt(self, task: Task, newly: Sequence[str], failed: int, expected: int, delivered: int,
                 error: Optional[str], retriable: bool = True) -> Attempt:
        outcome = decide(expected, delivered, task.attempts + 1, self.config.retry, retriable)
        return Attempt(task, newly, failed, outcome.state, expected, outcome.retry_in,
                       None if outcome.state == SUCCESS else error)

    def _delete_fetched(self, task: Task) -> bool:
        """Delete what the job task fetched, unless another unfinished task names it; False if
        Orthanc could not delete it."""
        if self.store.tasks.active_for_resource(task.resource_id):
            return True
        try:
            self.rest.delete(f"/{LEVEL_PATHS[task.level]}/{task.resource_id}")
        except DeliveryError as exc:
            if getattr(exc, "status", None) != 404:
                log.warning("job task %s: fetched %s %s could not be deleted: %s", task.id, task.level.lower(),
                            task.resource_id, exc)
                return False
        return True

    def _delete_if_done(self, task: Task) -> None:
        if self.store.tasks.unfinished_for_resource(task.resource_id):
            return
        try:
            self.rest.delete(f"/{LEVEL_PATHS[task.level]}/{task.resource_id}")
        except DeliveryError as exc:
            log.warning("task %s delivered but %s %s could not be deleted: %s",
                        task.id, task.level, task.resource_id, exc)
