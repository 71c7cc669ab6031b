"""The session engine (`SESSION_ENGINE`): Django's database sessions, with the one read every signed-in page does
(the session's row by its key) as a prepared query (controlplane/prepared.py) instead of an ORM `get()` built and
compiled on every request (issue 13).

Same table, same cookie, same encoding, same behaviour: a row past its expiry date is no session (Django's query says
`expire_date > now` in SQL; here the row is read by its key and the date compared in Python, with the same `now`),
and a key with no live row is forgotten, so the next write creates a new key (never the one the browser sent:
Django's protection against session fixation). Writes, deletes, `exists()` and the async methods are Django's.
"""

from __future__ import annotations

from typing import Any

from django.contrib.sessions.backends.db import SessionStore as DBSessionStore
from django.contrib.sessions.models import Session
from django.db import router
from django.utils import timezone

from controlplane.prepared import PreparedQuery

# The session's data and expiry, by key (the table's primary key): at most one row.
_SESSION_ROW = PreparedQuery(
    lambda session_key: Session.objects.filter(session_key=session_key).values_list("session_data", "expire_date"),
    session_key=str,
)


class SessionStore(DBSessionStore):
    def load(self) -> dict[str, Any]:
        key = self.session_key
        using = router.db_for_read(self.model) or "default"
        row = _SESSION_ROW.first(session_key=key, using=using) if key is not None else None
        if row is None or not row[1] > timezone.now():
            self._session_key = None  # as Django's load(): no live row, no key
            return {}
        return self.decode(row[0])
