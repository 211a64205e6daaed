"""Binder launch tickets: only the service's signature, for this user and server, in time."""

from __future__ import annotations

import base64
import json

import pytest

from egi_hub.binder_service.ticket import MAX_TICKET, TicketError, sign_ticket, verify_ticket

SECRET = "s" * 40
LAUNCH = {"environment": {"python": "/envs/abc/bin/python"}, "content": {"path": "/c/x"}}


def ticket(**kw):
    args = {"user": "alice", "server": "binder-1", "launch": LAUNCH, "ttl": 600, "now": 1000.0}
    args.update(kw)
    return sign_ticket(SECRET, **args)


def test_a_ticket_gives_back_its_launch_to_its_user_and_server():
    assert verify_ticket(SECRET, ticket(), user="alice", server="binder-1", now=1001) == LAUNCH


@pytest.mark.parametrize(
    ("user", "server", "now", "why"),
    [
        ("bob", "binder-1", 1001, "another user"),
        ("alice", "binder-2", 1001, "another user or server"),
        ("alice", "", 1001, "another user or server"),
        ("alice", "binder-1", 1601, "expired"),
    ],
)
def test_a_ticket_is_refused_for_another_user_server_or_after_it_expires(user, server, now, why):
    with pytest.raises(TicketError, match=why):
        verify_ticket(SECRET, ticket(), user=user, server=server, now=now)


def test_a_forged_or_altered_ticket_is_refused():
    good = ticket()
    payload, mac = good.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=="))
    body["launch"]["environment"]["python"] = "/bin/sh"
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    for bad in (f"{forged}.{mac}", sign_ticket("x" * 40, user="alice", server="binder-1",
                                               launch=LAUNCH, now=1000.0)):  # fmt: skip
        with pytest.raises(TicketError, match="signature"):
            verify_ticket(SECRET, bad, user="alice", server="binder-1", now=1001)


@pytest.mark.parametrize(
    "bad", [None, 42, {"a": 1}, "", "abc", "a.b.c", "!!!.???", "x" * (MAX_TICKET + 1), "\x00.\x01"]
)
def test_malformed_tickets_are_refused_with_one_line(bad):
    with pytest.raises(TicketError) as e:
        verify_ticket(SECRET, bad, user="alice", server="binder-1", now=1001)
    assert "\n" not in str(e.value)


def test_no_secret_means_no_binder_and_a_short_secret_signs_nothing():
    with pytest.raises(TicketError, match="no Binder ticket secret"):
        verify_ticket("", ticket(), user="alice", server="binder-1", now=1001)
    with pytest.raises(TicketError, match="32"):
        sign_ticket("short", user="alice", server="b", launch={})
