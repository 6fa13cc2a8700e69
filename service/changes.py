"""Hearing of committed changes at once: PostgreSQL ``LISTEN/NOTIFY``, SQLite's change counter.

Writers announce what they committed (`announce`, inside the transaction, so the note is sent
only if the change is): ``evidence <set ids>`` after observations, retractions, reviews and set
loads, ``queued <set id>`` when a fit is queued, ``published <set id>`` when one is published.
On PostgreSQL that is ``pg_notify('signpost', …)``, delivered to every listening process on
commit. SQLite has no notifications; its ``PRAGMA data_version`` changes whenever another
connection commits, so reading it every ``SIGNPOST_CHANGE_POLL`` seconds (a read of a counter in
shared memory, no table is touched) hears of any commit, from any process, within one poll.

A `ChangeFeed` (one per process) runs that wait in a daemon thread and calls its subscribers
with the topics heard (on SQLite: ``{"any"}``): the scheduler, to run a queued fit now rather
than at its next queue poll; the posterior cache, to serve a new fit at once. A lost connection
is reopened, and subscribers are called once after it (notes sent meanwhile are lost), so
nothing waits for the interval checks, which stay as a safety net.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

log = logging.getLogger("signpost.changes")

CHANNEL = "signpost"

Subscriber = Callable[[set[str]], None]


def announce(session: Session, topic: str, set_ids: Iterable[str] = ()) -> None:
    """Announce a change committed with ``session``'s transaction (PostgreSQL; else a no-op).

    SQLite's readers see the commit through its change counter instead.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    payload = " ".join([topic, *sorted(set(set_ids))])
    session.execute(text("SELECT pg_notify(:channel, :payload)"),
                    {"channel": CHANNEL, "payload": payload[:7999]})


class ChangeFeed:
    """Calls subscribers when another connection committed a change.

    Parameters
    ----------
    url : str
        The SQLAlchemy URL of the database (SQLite or PostgreSQL).
    poll : float
        SQLite: seconds between reads of the change counter. PostgreSQL: the longest wait
        for a notification before checking whether to stop.

    """

    def __init__(self, url: str, poll: float = 0.05):
        self.url = url
        self.poll = poll
        self._subscribers: list[Subscriber] = []
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self.started = threading.Event()  # set once the first listen/read is in place

    @property
    def dialect(self) -> str:
        """The database's backend name (``postgresql``, ``sqlite``)."""
        return make_url(self.url).get_backend_name()

    def subscribe(self, callback: Subscriber) -> None:
        """Call ``callback(topics)`` after each change heard (in the feed's thread: be quick)."""
        self._subscribers.append(callback)

    def start(self) -> ChangeFeed:
        """Start listening in a daemon thread; returns self."""
        target = self._listen_postgresql if self.dialect == "postgresql" else self._poll_sqlite
        self._thread = threading.Thread(target=self._run, args=(target,), daemon=True,
                                        name="change-feed")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening (the thread ends within one ``poll``)."""
        self._stopped.set()

    def _fire(self, topics: set[str]) -> None:
        for callback in list(self._subscribers):
            try:
                callback(topics)
            except Exception:  # one subscriber's failure must not silence the others
                log.exception("change subscriber failed")

    def _run(self, target: Callable[[], None]) -> None:
        while not self._stopped.is_set():
            try:
                target()
            except Exception:  # database gone or restarted: reopen, then catch up once
                log.warning("change feed lost its connection; reopening", exc_info=True)
                if self._stopped.wait(1.0):
                    return
                self._fire({"reconnected"})

    def _listen_postgresql(self) -> None:
        import psycopg  # the driver SQLAlchemy uses here

        url = make_url(self.url).set(drivername="postgresql")
        with psycopg.connect(url.render_as_string(hide_password=False),
                             autocommit=True) as connection:
            connection.execute(f"LISTEN {CHANNEL}")
            self.started.set()
            while not self._stopped.is_set():
                topics = {note.payload.split(" ", 1)[0]
                          for note in connection.notifies(timeout=self.poll * 20,
                                                          stop_after=1)}
                if topics:
                    self._fire(topics)

    def _poll_sqlite(self) -> None:
        path = make_url(self.url).database
        connection = sqlite3.connect(path, timeout=30, check_same_thread=False)
        try:
            seen = connection.execute("PRAGMA data_version").fetchone()[0]
            self.started.set()
            while not self._stopped.wait(self.poll):
                version = connection.execute("PRAGMA data_version").fetchone()[0]
                if version != seen:
                    seen = version
                    self._fire({"any"})
        finally:
            connection.close()
