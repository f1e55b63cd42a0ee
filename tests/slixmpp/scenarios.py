#!/usr/bin/python3
"""End-to-end scenarios against a running Osprey, driven by slixmpp.

Run by the Rust e2e suite (tests/e2e/slixmpp.rs):
    /usr/bin/python3 scenarios.py --scenario NAME --port PORT
Accounts alice, bob, carol @localhost exist with passwords "<name>-pw".
Exit status 0 when every check passed; otherwise the reason is on stderr.
"""

import argparse
import asyncio
import ssl
import sys
import xml.etree.ElementTree as ET

import slixmpp
from slixmpp.exceptions import IqError

HOST = "localhost"
PORT = 5222


class Client(slixmpp.ClientXMPP):
    def __init__(self, jid, password, mech=None):
        super().__init__(jid, password, sasl_mech=mech)
        # The test server's certificate is self-signed.
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        for p in ("xep_0030", "xep_0199", "xep_0203"):
            self.register_plugin(p)
        # None: no automatic answer (False would auto-reject).
        self.roster.auto_authorize = None
        self.roster.auto_subscribe = False
        self.messages = asyncio.Queue()
        self.presences = asyncio.Queue()
        self.errors = asyncio.Queue()
        self.subscribes = asyncio.Queue()
        self.add_event_handler("message", self._on_message)
        self.add_event_handler("message_error", lambda m: self.errors.put_nowait(m))
        self.add_event_handler("presence_available", lambda p: self.presences.put_nowait(p))
        self.add_event_handler("presence_unavailable", lambda p: self.presences.put_nowait(p))
        self.add_event_handler("presence_subscribe", lambda p: self.subscribes.put_nowait(p))

    def _on_message(self, msg):
        if msg["type"] in ("chat", "normal"):
            self.messages.put_nowait(msg)

    def once(self, event):
        fut = asyncio.get_event_loop().create_future()

        def handler(data):
            if not fut.done():
                fut.set_result(data)

        self.add_event_handler(event, handler, disposable=True)
        return fut


def check(cond, what):
    if not cond:
        raise AssertionError(what)


async def login(name, resource="r", mech=None, presence=True, priority=None):
    c = Client(f"{name}@{HOST}/{resource}", f"{name}-pw", mech)
    started = c.once("session_start")
    failed = c.once("failed_all_auth")
    c.connect(address=("127.0.0.1", PORT))
    done, _ = await asyncio.wait([started, failed], timeout=10, return_when=asyncio.FIRST_COMPLETED)
    check(started in done, f"{name}/{resource}: no session (mech {mech})")
    if presence:
        c.send_presence(ppriority=priority)
    return c


async def bye(*clients):
    for c in clients:
        gone = c.once("disconnected")
        c.disconnect()
        await asyncio.wait_for(gone, 10)


async def next_item(queue, what, timeout=5):
    try:
        return await asyncio.wait_for(queue.get(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"timed out waiting for {what}")


async def nothing_in(queue, what, timeout=0.7):
    try:
        item = await asyncio.wait_for(queue.get(), timeout)
    except asyncio.TimeoutError:
        return
    raise AssertionError(f"unexpected {what}: {item}")


# --- scenarios ---------------------------------------------------------------

async def s_login():
    for mech in ("SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"):
        c = await login("alice", resource=mech.lower(), mech=mech, presence=False)
        check(c.boundjid.full == f"alice@{HOST}/{mech.lower()}", f"bound {c.boundjid.full}")
        await bye(c)


async def s_wrong_password():
    c = Client(f"alice@{HOST}/x", "not-the-password", "SCRAM-SHA-256")
    failed = c.once("failed_all_auth")
    started = c.once("session_start")
    c.connect(address=("127.0.0.1", PORT))
    done, _ = await asyncio.wait([failed, started], timeout=10, return_when=asyncio.FIRST_COMPLETED)
    check(failed in done and started not in done, "wrong password must fail")
    c.disconnect()
    # The right password works on a new connection.
    ok = await login("alice", resource="retry", mech="SCRAM-SHA-256")
    await bye(ok)


async def s_roster():
    a1 = await login("alice", "one")
    a2 = await login("alice", "two")
    await a2.get_roster()
    pushed = a2.once("roster_update")
    await a1.update_roster(f"bob@{HOST}", name="Bob", groups=["Friends"])
    await asyncio.wait_for(pushed, 5)
    check(a2.client_roster[f"bob@{HOST}"]["name"] == "Bob", "push reached the other resource")
    await a1.get_roster()
    item = a1.client_roster[f"bob@{HOST}"]
    check(item["name"] == "Bob" and item["groups"] == ["Friends"], f"stored item {item['name']} {item['groups']}")
    check(item["subscription"] == "none", f"subscription {item['subscription']}")
    await bye(a1, a2)


async def subscribe_both(alice, bob):
    """alice → bob subscribe, bob approves and asks back, alice approves."""
    await alice.get_roster()
    await bob.get_roster()
    alice.send_presence_subscription(pto=f"bob@{HOST}", ptype="subscribe")
    req = await next_item(bob.subscribes, "alice's request at bob")
    check(req["from"].bare == f"alice@{HOST}", f"request from {req['from']}")
    bob.send_presence(pto=f"alice@{HOST}", ptype="subscribed")
    bob.send_presence_subscription(pto=f"alice@{HOST}", ptype="subscribe")
    req = await next_item(alice.subscribes, "bob's request at alice")
    alice.send_presence(pto=f"bob@{HOST}", ptype="subscribed")
    await asyncio.sleep(0.5)


async def s_subscription():
    alice = await login("alice", "a")
    bob = await login("bob", "b")
    await subscribe_both(alice, bob)
    await bye(alice, bob)
    # Stored: a fresh login sees both.
    for me, other in (("alice", "bob"), ("bob", "alice")):
        c = await login(me, "check", presence=False)
        await c.get_roster()
        sub = c.client_roster[f"{other}@{HOST}"]["subscription"]
        check(sub == "both", f"{me}'s roster: {other} is {sub}")
        await bye(c)


async def s_presence():
    alice = await login("alice", "a")
    bob = await login("bob", "b")
    await subscribe_both(alice, bob)
    while not bob.presences.empty():
        bob.presences.get_nowait()
    alice.send_presence(pstatus="hello from alice")
    while True:
        p = await next_item(bob.presences, "alice's presence at bob")
        if p["from"].bare == f"alice@{HOST}" and p["status"] == "hello from alice":
            break
    await bye(alice)
    while True:
        p = await next_item(bob.presences, "alice's unavailable at bob")
        if p["from"].bare == f"alice@{HOST}" and p["type"] == "unavailable":
            break
    await bye(bob)


async def s_messages():
    alice = await login("alice", "a")
    b1 = await login("bob", "high", priority=5)
    b2 = await login("bob", "low", priority=1)
    await asyncio.sleep(0.3)
    alice.send_message(mto=f"bob@{HOST}/low", mbody="to low", mtype="chat")
    m = await next_item(b2.messages, "message to the full JID")
    check(m["body"] == "to low" and m["from"] == alice.boundjid, f"got {m['body']} from {m['from']}")
    alice.send_message(mto=f"bob@{HOST}", mbody="to bare", mtype="chat")
    m = await next_item(b1.messages, "message to the bare JID at the high-priority resource")
    check(m["body"] == "to bare", m["body"])
    await nothing_in(b2.messages, "message at the low-priority resource")
    # Equal priorities: both get it.
    b2.send_presence(ppriority=5)
    await asyncio.sleep(0.3)
    alice.send_message(mto=f"bob@{HOST}", mbody="to both", mtype="chat")
    for b in (b1, b2):
        m = await next_item(b.messages, "message at both equal-priority resources")
        check(m["body"] == "to both", m["body"])
    await bye(alice, b1, b2)


async def s_offline():
    alice = await login("alice", "a")
    for i in range(3):
        alice.send_message(mto=f"carol@{HOST}", mbody=f"m{i}", mtype="chat")
    await asyncio.sleep(0.5)
    carol = await login("carol", "c")
    for i in range(3):
        m = await next_item(carol.messages, f"offline message {i}")
        check(m["body"] == f"m{i}", f"order: got {m['body']} for m{i}")
        check(m["delay"]["stamp"] is not None, "XEP-0203 delay stamp")
    await bye(carol)
    carol = await login("carol", "again")
    await nothing_in(carol.messages, "offline message delivered twice", 1.0)
    await bye(alice, carol)


async def s_disco_ping():
    c = await login("alice", "d", presence=False)
    info = await c["xep_0030"].get_info(jid=HOST)
    ids = info["disco_info"]["identities"]
    check(any(i[0] == "server" and i[1] == "im" for i in ids), f"identities {ids}")
    feats = info["disco_info"]["features"]
    for f in ("http://jabber.org/protocol/disco#info", "urn:xmpp:ping", "msgoffline"):
        check(f in feats, f"feature {f} missing from {feats}")
    items = await c["xep_0030"].get_items(jid=HOST)
    check(items["type"] == "result", "disco#items")
    rtt = await c["xep_0199"].ping(jid=HOST, timeout=5)
    check(rtt is not None, "ping")
    await bye(c)


async def s_errors():
    c = await login("alice", "e")
    iq = c.Iq()
    iq["type"] = "get"
    iq["to"] = HOST
    iq.xml.append(ET.Element("{urn:example:unknown}query"))
    try:
        await iq.send(timeout=5)
        raise AssertionError("an unknown namespace must be an error")
    except IqError as e:
        cond = e.iq["error"]["condition"]
        check(cond == "service-unavailable", f"unknown namespace: {cond}")
    c.send_message(mto=f"nobody@{HOST}", mbody="hello?", mtype="chat")
    err = await next_item(c.errors, "error for a message to an unknown user")
    check(err["error"]["condition"] == "service-unavailable", f"unknown user: {err['error']['condition']}")
    try:
        await c["xep_0199"].send_ping(jid=f"bob@{HOST}/nowhere", timeout=5)
        raise AssertionError("an IQ to an absent resource must be an error")
    except IqError as e:
        cond = e.iq["error"]["condition"]
        check(cond == "service-unavailable", f"absent resource: {cond}")
    await bye(c)


SCENARIOS = {name[2:]: fn for name, fn in globals().items() if name.startswith("s_")}


def main():
    global PORT
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", required=True, choices=sorted(SCENARIOS))
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    PORT = args.port
    try:
        asyncio.run(asyncio.wait_for(SCENARIOS[args.scenario](), 40))
    except AssertionError as e:
        print(f"FAILED {args.scenario}: {e}", file=sys.stderr)
        return 1
    except asyncio.TimeoutError:
        print(f"FAILED {args.scenario}: timed out", file=sys.stderr)
        return 1
    print(f"ok {args.scenario}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
