"""``AlertHandler``: error alerts by mail that never slow the app or flood an inbox.

``emit`` runs on the caller's thread and only fingerprints the record and counts it
in memory (a few microseconds, no I/O, never raises). A thread of the handler's own
wakes at once for a fingerprint it has not seen and otherwise about once a second:
it describes the records it was given, merges the counts into the alert state (the
spool, shared by processes, or memory), lets the policy (``_alert_policy``) decide
which mails go out, renders them and hands them to the Mailer's outbox as alerts.

About 390 lines: the handler's lifecycle (emit, its thread, flush, close, fork) and
the two adapter hooks; the tick itself is ``_ticker``.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from postbud import _fork
from postbud._address import parse_addresses
from postbud._config import Settings
from postbud._mailer import Mailer
from postbud._outbox import at_exit_first
from postbud.errors import ConfigurationError

from ._policy import Mail
from ._record import Fingerprint, fingerprint
from ._render import DEFAULT_SUBJECT, check_template, render
from ._ticker import OTHER, Delta, Ticker

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from postbud._config import SettingsKwargs

__all__ = ["AlertHandler", "recipients_of"]

log = logging.getLogger("postbud")

#: How often the handler's thread looks at its state without being woken.
TICK = 1.0
#: Distinct fingerprints counted between two ticks; more go into one "other" count.
MAX_HELD = 1_000
#: At most one tick per this many seconds, however many new errors arrive.
MIN_GAP = 0.1
#: After a tick, the thread waits this many times as long as the tick took: in a storm
#: of distinct errors (each described and masked) it uses at most a fifth of a core.
REST = 4.0

_local = threading.local()  # .busy: this thread is running the handler's own code
_live: weakref.WeakSet[AlertHandler] = weakref.WeakSet()
#: Set once the interpreter exits; flush() and close() then share one deadline.
_exiting = threading.Event()
_exit_deadline = [0.0]


def _ours(record: logging.LogRecord) -> bool:
    """Records to ignore: postbud's own, and those logged while handler code runs."""
    name = record.name if isinstance(record.name, str) else ""
    return (
        name == "postbud"
        or name.startswith("postbud.")
        or getattr(_local, "busy", False)
        or threading.current_thread().name.startswith("postbud-")
    )


def recipients_of(to: str | Sequence[str] | None, account: str) -> tuple[str, ...]:
    """Alert recipients from a handler's ``to`` (default: the account itself), checked
    now: a mistake is a ``ConfigurationError`` at construction, not at the first error."""
    items = [to] if isinstance(to, str) else list(to or [account])
    try:
        found = [a.addr_spec for item in items for a in parse_addresses(str(item))]
    except ValueError as exc:
        raise ConfigurationError(f"to: {exc}") from None
    if not found:
        raise ConfigurationError("to: no address given.")
    return tuple(dict.fromkeys(a.lower() for a in found))


class AlertHandler(logging.Handler):
    """A ``logging.Handler`` that mails errors, with storm control.

    The first occurrence of an error goes out at once; repeats within
    ``alert_cooldown`` are counted and reported in one follow-up; past ``alert_cap``
    mails an hour everything goes into one hourly digest. Counts are never dropped.

    Args:
        to: Who gets the alerts (a string, comma-separated, or a list); default: the
            sending account itself.
        subject: Template with ``{level}``, ``{logger}``, ``{message}``,
            ``{exc_type}``, ``{host}`` (default ``"[{level}] {logger}: {message}"``;
            ``alert_tag`` is put in front as ``[tag]``).
        level: Lowest level mailed (default ``ERROR``).
        mailer: A Mailer to send with (the handler never closes it). Without one the
            handler builds its own from ``**settings`` over the ``POSTBUD_*``
            environment variables (a setting given here wins), and closes it in
            ``close()``.
        clock: Seconds since the epoch for the policy (tests move time with it).
        **settings: The settings vocabulary (``username``, ``app_password``,
            ``alert_cooldown``, ``alert_cap``, ``alert_tag``, ``spool``...).

    Raises:
        ConfigurationError: At construction, for any bad value.
    """

    def __init__(
        self,
        to: str | Sequence[str] | None = None,
        subject: str | None = None,
        level: int | str = logging.ERROR,
        *,
        mailer: Mailer | None = None,
        clock: Callable[[], float] | None = None,
        **settings: Unpack[SettingsKwargs],
    ) -> None:
        super().__init__()
        # Usable by close() and logging.shutdown() even if the checks below fail.
        self._closed = True
        self._keeping = False
        self._new_thread_state()
        try:
            self.setLevel(level)
        except (ValueError, TypeError):
            raise ConfigurationError(
                f"level: {level!r} is not a logging level; use ERROR, CRITICAL, WARNING "
                "or a number."
            ) from None
        if mailer is not None and settings:
            raise ConfigurationError(
                f"AlertHandler takes either mailer= or settings ({', '.join(settings)}), "
                "not both: set them on the Mailer."
            )
        # Everything is checked before a Mailer (and perhaps its worker) exists.
        # Settings given here win over POSTBUD_* variables, which fill in the rest:
        # the app password can stay in the environment, out of the logging config.
        config = mailer.settings if mailer is not None else Settings.from_env(**settings)
        self.to = recipients_of(to, config.username)
        self.subject = DEFAULT_SUBJECT if subject is None else subject
        check_template(self.subject)
        self._owns_mailer = mailer is None
        self.mailer = mailer if mailer is not None else Mailer(config)
        self._clock = clock or time.time
        self._deltas: dict[Fingerprint, Delta] = {}
        self._seen: set[Fingerprint] = set()
        self._counts = {"records": 0, "first": 0, "follow-up": 0, "digest": 0}
        self._ticker = Ticker(self)
        self._flushed_at: float | None = None
        self._mails_since_flush = 0
        self._closed = False
        _fork.register(self)
        _live.add(self)

    def _new_thread_state(self) -> None:
        # Reentrant: a signal handler that logs may run inside emit() on this thread.
        self._deltas_lock = threading.RLock()
        self._start_lock = threading.RLock()
        self._tick_lock = threading.Lock()
        self._wake = threading.Event()
        #: Set while flush, close or a test's tick waits for the thread's tick.
        self._hurry = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        level = logging.getLevelName(self.level)
        return f"<postbud.AlertHandler {level} to {', '.join(self.to)}>"

    # -- the caller's thread ------------------------------------------------------------

    def handle(self, record: logging.LogRecord) -> logging.LogRecord | bool:  # type: ignore[override]
        # No handler lock: emit is thread-safe on its own, and a caller must never
        # wait behind flush() or close() holding it.
        if _ours(record):
            return False
        result = self.filter(record)
        if result:
            self.emit(result if isinstance(result, logging.LogRecord) else record)
        return result

    def emit(self, record: logging.LogRecord) -> None:
        """Count ``record`` in memory; the handler's thread does the rest."""
        if self._closed:
            return
        _local.busy = True  # a record logged by a __str__ we call now is ignored
        try:
            key = fingerprint(record)
            message = record.getMessage()
            at = self._clock()
            # A first occurrence in this process: what the hook keeps of it, taken now,
            # on the caller's thread (reading the set without the lock is safe).
            captured = self._captured(record) if key not in self._seen else None
            with self._deltas_lock:
                self._counts["records"] += 1
                delta = self._deltas.get(key)
                if delta is None and len(self._deltas) >= MAX_HELD:
                    # A storm of distinct errors: memory and the next tick's work stay
                    # bounded, and the rest is counted in one "other" line (the sum of
                    # the counts stays exact).
                    key, captured = OTHER, None
                    delta = self._deltas.get(OTHER)
                if delta is None:
                    self._deltas[key] = Delta(
                        1, at, at, record, message, record, message, captured, key == OTHER
                    )
                else:
                    delta.add(record, message, at)
                new = key not in self._seen
                if new:
                    if len(self._seen) > 10_000:
                        self._seen.clear()
                    self._seen.add(key)
            if new:  # a first occurrence goes out now, not at the next tick
                self._kick()
        except Exception:
            self.handleError(record)
        finally:
            _local.busy = False

    def _kick(self) -> None:
        with self._start_lock:
            if self._thread is None and not self._closed:
                thread = threading.Thread(target=self._run, name="postbud-alerts", daemon=True)
                try:
                    thread.start()
                except RuntimeError:  # Python 3.12+ at exit: close() does the work
                    return
                self._thread = thread
                if not self._keeping:
                    self._keeping = True
                    self.mailer.outbox.keep_alive(True)
        self._wake.set()

    # -- the handler's thread -----------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.wait(TICK)
            self._wake.clear()
            if self._closed:
                break
            started, cpu = time.monotonic(), time.thread_time()
            self._locked_tick(force=False, leaving=False, paced=True)
            took = time.monotonic() - started
            spare = max(MIN_GAP - took, REST * (time.thread_time() - cpu))
            if spare > 0:
                time.sleep(spare)

    def tick(self, *, force: bool = False) -> None:
        """Do now what the handler's thread does about once a second.

        Merges the counts, sends what is due (first alerts, follow-ups whose cooldown
        ended, the digest of a window that ended). ``force=True`` (``flush``) also
        reports pending counts before their cooldown ends and sends the digest now,
        unless other processes' handlers share the spool and still run. Tests that
        move the clock call this instead of waiting. Never raises.
        """
        self._locked_tick(force=force, leaving=False)

    def _locked_tick(self, *, force: bool, leaving: bool, paced: bool = False) -> None:
        if not paced:  # a tick in progress on the handler's thread stops pausing
            self._hurry.set()
        with self._tick_lock:
            if paced:
                self._hurry.clear()
            _local.busy = True
            try:
                self._ticker.run(force, leaving, paced)
            except Exception:  # a bug must not stop alerting for good
                log.exception("postbud's alert handler hit an unexpected error")
            finally:
                _local.busy = False

    # -- for the ticker (alerts/_ticker.py), in this package only ---------------------

    def _take_counts(self) -> dict[Fingerprint, Delta]:
        """The counts ``emit`` gathered since the last tick (and start new ones)."""
        with self._deltas_lock:
            deltas, self._deltas = self._deltas, {}
        return deltas

    def _now(self) -> float:
        """The policy's clock (seconds since the epoch; tests move it)."""
        return self._clock()

    def _count_mails(self, kinds: list[str]) -> None:
        """The ticker queued mails of these kinds."""
        with self._deltas_lock:
            for kind in kinds:
                self._counts[kind] += 1
            self._mails_since_flush += len(kinds)

    def _put_back(self, deltas: dict[Fingerprint, Delta]) -> None:
        """Counts a tick could not store: merged into the next one, never lost."""
        with self._deltas_lock:
            for key, old in deltas.items():
                newer = self._deltas.get(key)
                self._deltas[key] = old.merged(newer) if newer is not None else old

    def _captured(self, record: logging.LogRecord) -> Any:
        try:
            return self.capture(record)
        except Exception as exc:  # the alert still goes out, saying what went wrong
            return {"capture_error": f"{type(exc).__name__}: {exc}"}

    # -- hooks for adapters (Django's AdminAlertHandler, Flask) ---------------------------

    def capture(self, record: logging.LogRecord) -> Any:
        """What to keep of a fingerprint's first occurrence in this process, on the
        caller's thread (the request, the frame locals are still there).

        Called from ``emit`` once per fingerprint and process; return a JSON-able value
        (it is stored in the spool with the alert state) or None. It must be quick and
        must not log through this handler. The value reaches ``render_mail`` as
        ``mail.detail["captured"]`` for first alerts. Default: None.
        """
        return None

    def render_mail(self, mail: Mail) -> tuple[str, str, str | None]:
        """(subject, text, html) of one alert mail: a first alert, a follow-up or a digest.

        Override to change the subject or the bodies (call this for the kinds you do
        not change). Runs on the handler's thread; an exception falls back to a plain
        alert that still reports the count.
        """
        s = self.mailer.settings
        return render(
            mail,
            template=self.subject,
            tag=s.alert_tag,
            cooldown=s.alert_cooldown,
            cap=s.alert_cap,
        )

    # -- lifecycle -----------------------------------------------------------------------

    def flush(self) -> None:
        """Send pending follow-ups and the digest now and wait up to ``exit_timeout``.

        On a spool shared with other processes whose handlers still run, the counts
        are merged and those processes send the mails when they are due.
        """
        if self._closed:
            return
        self.tick(force=True)
        self.mailer.flush(_left_at_exit())
        with self._deltas_lock:
            self._flushed_at, self._mails_since_flush = time.monotonic(), 0

    def close(self) -> None:
        """Send what is pending (as ``flush``), stop the thread, close an owned Mailer."""
        if not self._closed:
            self._closed = True
            self._wake.set()
            self._locked_tick(force=True, leaving=True)
            with self._start_lock:
                if self._keeping:
                    self._keeping = False
                    self.mailer.outbox.keep_alive(False)
            timeout = _left_at_exit()
            recent = self._flushed_at is not None and time.monotonic() - self._flushed_at < 1
            if timeout is None and recent and not self._mails_since_flush:
                timeout = 0.0  # logging.shutdown() flushed just now: do not wait twice
            wait = self.mailer.settings.exit_timeout if timeout is None else timeout
            sent = self.mailer.flush(wait)
            if not sent:
                self._warn_unsent(wait)
            if self._owns_mailer:
                # Flushed already: up to 1 s more only for the worker to stop (close's
                # stop waits min(1 s, timeout)); nothing more when mail was left.
                self.mailer.close(1.0 if sent else 0.0)
        super().close()

    def _warn_unsent(self, waited: float) -> None:
        """One warning when close() leaves mail unsent (alerts among it, probably)."""
        outbox = self.mailer.outbox
        left = outbox.queued()
        if not left:
            return
        if outbox.shared:
            where = (
                f"they stay in the spool ({self.mailer.settings.spool}) and go out with the "
                "next postbud process of this account ('postbud outbox status' shows them)"
            )
        elif self._owns_mailer:
            return  # its Mailer's close() says what it drops
        else:
            where = "they stay queued in the Mailer passed in, which keeps trying"
        log.warning(
            "postbud's alert handler could not send %d message(s) within %g s at close; %s.",
            left,
            waited,
            where,
        )

    def stats(self) -> dict[str, int]:
        """Records counted, and mails queued by kind (``first``, ``follow-up``, ``digest``)."""
        with self._deltas_lock:
            return dict(self._counts)

    def _after_fork(self) -> None:
        # The parent's counts are the parent's to report; the child starts over.
        self._new_thread_state()
        self._deltas = {}
        self._seen = set()
        self._counts = dict.fromkeys(self._counts, 0)
        self._ticker.forget()


def _left_at_exit() -> float | None:
    """At exit, the time left of the one shared deadline; else None (exit_timeout)."""
    if not _exiting.is_set():
        return None
    return max(0.0, _exit_deadline[0] - time.monotonic())


def _report_at_exit() -> None:
    # Run by the exit hook before the outboxes drain: the last follow-ups and digests
    # are queued while the outbox workers run (they stay up for logging.shutdown(),
    # which then flushes and closes the handlers within the same deadline).
    handlers = [h for h in list(_live) if not h._closed]
    if handlers:
        wait = max(h.mailer.settings.exit_timeout for h in handlers)
        _exit_deadline[0] = time.monotonic() + wait
    for handler in handlers:
        handler.tick(force=True)
    _exiting.set()


at_exit_first(_report_at_exit)
