#!/usr/bin/python3
"""End-to-end scenarios against a running Osprey, driven by slixmpp.

Run by the Rust e2e suite (tests/e2e/slixmpp.rs):

    /usr/bin/python3 scenarios.py --scenario NAME --port PORT \
        --password PW --jids alice@localhost [bob@localhost ...]

Every JID is a registered account with password PW; `ROLES[NAME]` says how
many a scenario needs. Exit status 0 when every check passed; otherwise the
reason and the tail of the client-side XML trace are on stderr.
"""

import argparse
import asyncio
import collections
import datetime
import logging
import ssl
import sys
import xml.etree.ElementTree as ET

try:
    import slixmpp
    from slixmpp.exceptions import IqError
except ImportError:
    print("slixmpp is missing: apt-get install python3-slixmpp", file=sys.stderr)
    sys.exit(3)

# Whole-scenario limit: a hung server must not hang the suite.
GLOBAL_TIMEOUT = 30
# Limit for one expected event.
STEP = 5

CONF = argparse.Namespace()
# The client-side trace (slixmpp logs every SEND/RECV at DEBUG), printed on failure.
TRACE = collections.deque(maxlen=150)


class TraceHandler(logging.Handler):
    # Setup chatter that would push the stanzas out of the trace.
    NOISE = ("Loaded Plugin", "DNS:", "Event triggered", "Using selector")

    def emit(self, record):
        if not record.getMessage().startswith(self.NOISE):
            TRACE.append(self.format(record))


class Client(slixmpp.ClientXMPP):
    """One slixmpp client that queues what the scenarios inspect."""

    def __init__(self, jid, password, mech=None):
        super().__init__(jid, password, sasl_mech=mech)
        # The test server's certificate is self-signed.
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        for p in ("xep_0030", "xep_0199", "xep_0203"):
            self.register_plugin(p)
        # None: never answer subscription requests automatically (False would
        # auto-reject), so the scenarios drive every step themselves.
        self.roster.auto_authorize = None
        self.roster.auto_subscribe = False
        self.messages = asyncio.Queue()
        self.errors = asyncio.Queue()
        self.presences = asyncio.Queue()
        self.subscribes = asyncio.Queue()
        self.subscribeds = asyncio.Queue()
        self.pushes = asyncio.Queue()
        self.add_event_handler("message", self._on_message)
        self.add_event_handler("message_error", self.errors.put_nowait)
        # slixmpp names presence events after <show/> ("presence_away"), so
        # availability is taken from the generic event.
        self.add_event_handler("presence", self._on_presence)
        self.add_event_handler("presence_subscribe", self.subscribes.put_nowait)
        self.add_event_handler("presence_subscribed", self.subscribeds.put_nowait)
        # Fired for roster results too; only sets are pushes.
        self.add_event_handler("roster_update", self._on_roster)

    def _on_message(self, msg):
        if msg["type"] in ("chat", "normal"):
            self.messages.put_nowait(msg)

    def _on_presence(self, pres):
        if pres.xml.get("type") in (None, "unavailable"):
            self.presences.put_nowait(pres)

    def _on_roster(self, iq):
        if iq["type"] == "set":
            self.pushes.put_nowait(iq)

    def once(self, event):
        """A future completed by the next `event`."""
        fut = asyncio.get_running_loop().create_future()

        def handler(data):
            if not fut.done():
                fut.set_result(data)

        self.add_event_handler(event, handler, disposable=True)
        return fut

    async def barrier(self):
        """A ping round trip: the server has handled everything sent before it."""
        await self["xep_0199"].ping(jid=domain(), timeout=STEP)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def domain():
    return slixmpp.JID(CONF.jids[0]).domain


def user(i):
    """The bare JID of the i-th account given on the command line."""
    return CONF.jids[i]


async def login(i, resource="r", mech=None, presence=True, priority=None, password=None):
    c = Client(f"{user(i)}/{resource}", password or CONF.password, mech)
    started = c.once("session_start")
    failed = c.once("failed_all_auth")
    c.connect(address=("127.0.0.1", CONF.port))
    done, _ = await asyncio.wait([started, failed], timeout=STEP, return_when=asyncio.FIRST_COMPLETED)
    check(started in done, f"{user(i)}/{resource}: no session (mech {mech}, auth failed: {failed in done})")
    if presence:
        c.send_presence(ppriority=priority)
        await c.barrier()
    return c


async def bye(*clients):
    for c in clients:
        gone = c.once("disconnected")
        c.disconnect()
        await asyncio.wait_for(gone, STEP)


async def next_item(queue, what, timeout=STEP):
    try:
        return await asyncio.wait_for(queue.get(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def next_matching(queue, what, pred, timeout=STEP):
    """Skips items until one satisfies `pred`; fails after `timeout` overall."""
    seen = []

    async def scan():
        while True:
            item = await queue.get()
            if pred(item):
                return item
            seen.append(str(item))

    try:
        return await asyncio.wait_for(scan(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"timed out waiting for {what}; saw instead: {seen}") from None


async def nothing_in(queue, what, timeout=0.7):
    try:
        item = await asyncio.wait_for(queue.get(), timeout)
    except asyncio.TimeoutError:
        return
    raise AssertionError(f"unexpected {what}: {item}")


def drain(queue):
    while not queue.empty():
        queue.get_nowait()


def push_item(iq, jid):
    """The roster item for `jid` in a push (None when absent)."""
    items = iq["roster"]["items"]
    return items.get(slixmpp.JID(jid))


async def push_with(client, jid, what, **want):
    """The next roster push at `client` whose item for `jid` has the `want` values."""

    def ok(iq):
        item = push_item(iq, jid)
        return item is not None and all(item[k] == v for k, v in want.items())

    return await next_matching(client.pushes, f"roster push at {client.boundjid}: {what}", ok)


async def stored_roster(i):
    """The roster as stored: fetched by a fresh resource."""
    c = await login(i, "fresh", presence=False)
    res = await c.get_roster(timeout=STEP)
    await bye(c)
    return res["roster"]["items"]


async def expect_error(send, what, condition, etype="cancel"):
    try:
        res = await send()
    except IqError as e:
        got = (e.iq["error"]["condition"], e.iq["error"]["type"])
        check(got == (condition, etype), f"{what}: error {got}, want ({condition}, {etype})")
        return e.iq
    raise AssertionError(f"{what}: got a result ({res}), want error {condition}")


# --- scenarios ---------------------------------------------------------------

async def s_login():
    for mech in ("SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"):
        res = mech.lower()
        c = Client(f"{user(0)}/{res}", CONF.password, mech)
        authed = c.once("auth_success")
        started = c.once("session_start")
        c.connect(address=("127.0.0.1", CONF.port))
        await asyncio.wait_for(started, STEP)
        check(authed.done(), f"{mech}: session without auth_success")
        used = c["feature_mechanisms"].mech.name
        check(used == mech, f"authenticated with {used}, asked for {mech}")
        # STARTTLS happened: the stream runs over TLS.
        check(isinstance(c.socket, (ssl.SSLObject, ssl.SSLSocket)), f"{mech}: stream is not over TLS")
        check(c.socket.version().startswith("TLSv1."), f"{mech}: TLS version {c.socket.version()}")
        check(c.boundjid.full == f"{user(0)}/{res}", f"{mech}: bound {c.boundjid.full}, asked {user(0)}/{res}")
        await bye(c)
    # No resource asked: the server picks one (RFC 6120 §7.6).
    c = Client(user(0), CONF.password, "SCRAM-SHA-256")
    started = c.once("session_start")
    c.connect(address=("127.0.0.1", CONF.port))
    await asyncio.wait_for(started, STEP)
    check(c.boundjid.bare == user(0) and c.boundjid.resource, f"server-chosen resource: bound {c.boundjid.full}")
    await bye(c)


async def s_wrong_password():
    # 1. Wrong password, one mechanism allowed: <not-authorized/>, no session.
    c = Client(f"{user(0)}/x", CONF.password + "-wrong", "SCRAM-SHA-256")
    failure = c.once("failed_auth")
    all_failed = c.once("failed_all_auth")
    started = c.once("session_start")
    c.connect(address=("127.0.0.1", CONF.port))
    await asyncio.wait_for(all_failed, STEP)
    check(failure.done() and failure.result()["condition"] == "not-authorized",
          f"SASL failure condition: {failure.result()['condition'] if failure.done() else 'none'}")
    check(not started.done(), "a session started with a wrong password")
    gone = c.once("disconnected")
    c.disconnect()
    await asyncio.wait_for(gone, STEP)

    # 2. Retry on the SAME stream (RFC 6120 §6.4.5 allows retries): slixmpp
    # only moves on to the next offered mechanism after a failure, so the
    # retry uses SCRAM-SHA-1 with the right password after SCRAM-SHA-256 failed.
    c = Client(f"{user(0)}/same", CONF.password + "-wrong")
    c["feature_mechanisms"].use_mechs = {"SCRAM-SHA-256", "SCRAM-SHA-1"}
    connects = []
    failed_with = []
    c.add_event_handler("connected", connects.append)

    def on_failed(stanza):
        failed_with.append((c["feature_mechanisms"].mech.name, stanza["condition"]))
        c.password = CONF.password

    c.add_event_handler("failed_auth", on_failed)
    started = c.once("session_start")
    c.connect(address=("127.0.0.1", CONF.port))
    try:
        await asyncio.wait_for(started, STEP)
    except asyncio.TimeoutError:
        raise AssertionError(f"no session after a same-stream retry; failures: {failed_with}") from None
    check(failed_with == [("SCRAM-SHA-256", "not-authorized")], f"failures before the retry: {failed_with}")
    check(c["feature_mechanisms"].mech.name == "SCRAM-SHA-1", "retry mechanism")
    check(len(connects) == 1, f"{len(connects)} TCP connections, want the retry on the first")
    check(c.boundjid.full == f"{user(0)}/same", f"bound {c.boundjid.full}")
    await bye(c)

    # 3. A new connection with the right password works.
    ok = await login(0, resource="retry", mech="SCRAM-SHA-256")
    await bye(ok)


async def s_roster():
    bob = user(1)
    a1 = await login(0, "one")
    a2 = await login(0, "two")
    a3 = await login(0, "three")
    # a1 and a2 are interested resources (they fetched the roster); a3 is not.
    await a1.get_roster(timeout=STEP)
    await a2.get_roster(timeout=STEP)

    await a1.update_roster(bob, name="Bob", groups=["Friends", "Work"], timeout=STEP)
    for c in (a1, a2):  # RFC 6121 §2.3.2: the setting resource gets the push too.
        iq = await push_with(c, bob, "bob added", name="Bob")
        item = push_item(iq, bob)
        check(sorted(item["groups"]) == ["Friends", "Work"], f"pushed groups {item['groups']}")
        check(item["subscription"] == "none", f"pushed subscription {item['subscription']}")
        check(iq["from"].full in ("", user(0)), f"push from {iq['from']} (RFC 6121 §2.1.6)")
    await nothing_in(a3.pushes, "roster push at a resource that never fetched the roster")

    stored = (await stored_roster(0)).get(slixmpp.JID(bob))
    check(stored is not None, "bob not in the stored roster")
    check(stored["name"] == "Bob" and sorted(stored["groups"]) == ["Friends", "Work"],
          f"stored item {stored['name']} {stored['groups']}")
    check(stored["subscription"] == "none", f"stored subscription {stored['subscription']}")

    # Update, then remove.
    await a2.update_roster(bob, name="Robert", groups=["Work"], timeout=STEP)
    iq = await push_with(a1, bob, "bob renamed", name="Robert")
    check(push_item(iq, bob)["groups"] == ["Work"], f"updated groups {push_item(iq, bob)['groups']}")
    await a1.del_roster_item(bob)
    await push_with(a2, bob, "bob removed", subscription="remove")
    check(slixmpp.JID(bob) not in await stored_roster(0), "removed item still stored")
    await bye(a1, a2, a3)


async def subscribe_both(alice, bob):
    """alice subscribes to bob, bob approves and subscribes back, alice approves;
    checks each roster push and presence on the way (RFC 6121 §3.1)."""
    a, b = user(0), user(1)
    await alice.get_roster(timeout=STEP)
    await bob.get_roster(timeout=STEP)

    alice.send_presence_subscription(pto=b, ptype="subscribe")
    await push_with(alice, b, "outbound subscribe pending", subscription="none", ask="subscribe")
    req = await next_item(bob.subscribes, "alice's request at bob")
    check(req["from"] == a, f"request from {req['from']}, want the bare {a}")

    bob.send_presence(pto=a, ptype="subscribed")
    await push_with(bob, a, "bob approved", subscription="from")
    await push_with(alice, b, "alice subscribed to bob", subscription="to")
    got = await next_item(alice.subscribeds, "bob's subscribed at alice")
    check(got["from"].bare == b, f"subscribed from {got['from']}")
    # §3.1.5: bob's server sends bob's current presence to the new subscriber.
    await next_matching(alice.presences, "bob's presence after approval",
                        lambda p: p["from"] == bob.boundjid and p.xml.get("type") is None)

    bob.send_presence_subscription(pto=a, ptype="subscribe")
    req = await next_item(alice.subscribes, "bob's request at alice")
    check(req["from"] == b, f"request from {req['from']}")
    alice.send_presence(pto=b, ptype="subscribed")
    await push_with(alice, b, "alice side both", subscription="both")
    await push_with(bob, a, "bob side both", subscription="both")
    await next_matching(bob.presences, "alice's presence after approval",
                        lambda p: p["from"] == alice.boundjid and p.xml.get("type") is None)


async def s_subscription():
    alice = await login(0, "a")
    bob = await login(1, "b")
    await subscribe_both(alice, bob)
    await bye(alice, bob)
    # Stored: a fresh login sees both.
    for me, other in ((0, 1), (1, 0)):
        item = (await stored_roster(me)).get(slixmpp.JID(user(other)))
        check(item is not None, f"{user(other)} missing from {user(me)}'s stored roster")
        check(item["subscription"] == "both" and not item["ask"],
              f"{user(me)}'s stored roster: {user(other)} is {item['subscription']} ask={item['ask']}")


async def s_presence():
    a = user(0)
    alice = await login(0, "a")
    bob = await login(1, "b")
    carol = await login(2, "c")  # not subscribed to alice: must see nothing
    await subscribe_both(alice, bob)
    drain(bob.presences)
    drain(carol.presences)

    alice.send_presence(pstatus="hello from alice", pshow="away")
    p = await next_matching(bob.presences, "alice's status update at bob",
                            lambda p: p["from"] == alice.boundjid and p["status"] == "hello from alice")
    check(p["show"] == "away", f"show {p['show']}")

    # A second resource of alice; a new resource of bob gets both by probe (§4.3.2).
    alice2 = await login(0, "a2", presence=False)
    alice2.send_presence(pstatus="second")
    await next_matching(bob.presences, "alice/a2 available at bob", lambda p: p["from"] == alice2.boundjid)
    bob2 = await login(1, "b2")
    want = {f"{a}/a": "hello from alice", f"{a}/a2": "second"}
    got = {}
    while got != want:
        p = await next_matching(bob2.presences, f"probe answers at bob/b2 (have {got})",
                                lambda p: p["from"].bare == a and p.xml.get("type") is None)
        got[p["from"].full] = p["status"]
    await nothing_in(carol.presences, "presence at a user without a subscription")

    # Unavailable: explicit with a status, on a closed stream, on a dropped TCP connection.
    alice.send_presence(ptype="unavailable", pstatus="gone fishing")
    p = await next_matching(bob.presences, "alice/a's explicit unavailable",
                            lambda p: p["from"] == f"{a}/a" and p["type"] == "unavailable")
    check(p["status"] == "gone fishing", f"unavailable status {p['status']}")
    await bye(alice)
    await bye(alice2)  # stream closed without an unavailable presence (RFC 6121 §4.5.2)
    await next_matching(bob.presences, "unavailable for alice/a2 after its stream closed",
                        lambda p: p["from"] == f"{a}/a2" and p["type"] == "unavailable")
    alice3 = await login(0, "a3")
    await next_matching(bob.presences, "alice/a3 available", lambda p: p["from"] == f"{a}/a3")
    gone = alice3.once("disconnected")
    alice3.abort()  # TCP connection dropped: no stream close at all
    await asyncio.wait_for(gone, STEP)
    await next_matching(bob.presences, "unavailable for alice/a3 after its connection dropped",
                        lambda p: p["from"] == f"{a}/a3" and p["type"] == "unavailable")
    await nothing_in(carol.presences, "presence at a user without a subscription", 0.2)
    await bye(bob, bob2, carol)


async def s_messages():
    b = user(1)
    alice = await login(0, "a")
    high = await login(1, "high", priority=5)
    low = await login(1, "low", priority=1)

    msg = alice.make_message(mto=f"{b}/low", mbody="to low", mtype="chat")
    msg["id"] = "m-full"
    msg.send()
    m = await next_item(low.messages, "message to the full JID")
    check((m["body"], m["from"], m["id"]) == ("to low", alice.boundjid, "m-full"),
          f"full-JID message: {m['body']!r} from {m['from']} id {m['id']}")
    check(m["to"] == f"{b}/low", f"to {m['to']}")

    # RFC 6121 §8.5.2.1.1: bare JID → the highest-priority resource only.
    alice.send_message(mto=b, mbody="to bare", mtype="chat")
    m = await next_item(high.messages, "bare-JID message at the priority-5 resource")
    check(m["body"] == "to bare", f"got {m['body']!r} at high (the full-JID message leaked?)")
    await nothing_in(low.messages, "bare-JID message at the priority-1 resource")

    # §8.5.3.2.1: a chat message to an unknown resource is treated as sent to the bare JID.
    alice.send_message(mto=f"{b}/nowhere", mbody="lost resource", mtype="chat")
    m = await next_item(high.messages, "message to an absent resource, rerouted to the bare JID")
    check(m["body"] == "lost resource", f"got {m['body']!r}")
    await nothing_in(low.messages, "rerouted message at the priority-1 resource", 0.3)

    # Equal priorities: Osprey's rule is every resource with the top priority
    # (§8.5.2.1.1 allows that or picking one).
    low.send_presence(ppriority=5)
    await low.barrier()
    alice.send_message(mto=b, mbody="to both", mtype="chat")
    for c in (high, low):
        m = await next_item(c.messages, f"equal-priority message at {c.boundjid}")
        check(m["body"] == "to both", f"got {m['body']!r}")

    # Only a negative-priority resource left: it must not get bare-JID
    # messages (§8.5.2.1.1); the message is kept offline instead.
    low.send_presence(ppriority=-1)
    await low.barrier()
    await bye(high)
    alice.send_message(mto=b, mbody="while negative", mtype="chat")
    await nothing_in(low.messages, "bare-JID message at a negative-priority resource")
    late = await login(1, "late")
    m = await next_item(late.messages, "message kept offline while only priority -1 was online")
    check(m["body"] == "while negative" and m["delay"]["stamp"] is not None, f"got {m['body']!r} delay {m['delay']}")
    await bye(alice, low, late)


async def s_offline():
    b = user(1)
    alice = await login(0, "a")
    sent_at = datetime.datetime.now(datetime.timezone.utc)
    for i in range(3):
        alice.send_message(mto=b, mbody=f"m{i}", mtype="chat")
    await alice.barrier()
    bob = await login(1, "b")
    for i in range(3):
        m = await next_item(bob.messages, f"offline message {i}")
        check(m["body"] == f"m{i}", f"order: got {m['body']!r} for m{i}")
        check(m["from"] == alice.boundjid, f"from {m['from']}")
        check(m.xml.find("{urn:xmpp:delay}delay") is not None, "no XEP-0203 <delay/>")
        stamp = m["delay"]["stamp"]
        check(stamp is not None, "XEP-0203 delay without a stamp")
        skew = abs((stamp - sent_at).total_seconds())
        check(skew < 60, f"delay stamp {stamp} is {skew:.0f} s away from the send time {sent_at}")
    await nothing_in(bob.messages, "a fourth offline message", 0.3)
    await bye(bob)
    bob = await login(1, "again")
    await nothing_in(bob.messages, "offline message delivered twice", 1.0)
    await bye(alice, bob)


async def s_disco_ping():
    c = await login(0, "d", presence=False)
    info = await c["xep_0030"].get_info(jid=domain(), timeout=STEP)
    check(info["from"] == domain(), f"disco#info answered from {info['from']}")
    ids = info["disco_info"]["identities"]
    check(any(i[0] == "server" and i[1] == "im" for i in ids), f"identities {ids}")
    feats = info["disco_info"]["features"]
    for f in ("http://jabber.org/protocol/disco#info", "urn:xmpp:ping", "msgoffline"):
        check(f in feats, f"feature {f} missing from {feats}")
    items = await c["xep_0030"].get_items(jid=domain(), timeout=STEP)
    check(items["type"] == "result" and items["from"] == domain(), f"disco#items: {items}")
    pong = await c["xep_0199"].send_ping(jid=domain(), timeout=STEP)
    check(pong["type"] == "result" and pong["from"] == domain(), f"ping reply {pong}")
    await bye(c)


async def s_errors():
    b = user(1)
    c = await login(0, "e")

    def unknown_query(to):
        iq = c.Iq()
        iq["type"] = "get"
        iq["to"] = to
        iq.xml.append(ET.Element("{urn:example:unknown}query"))
        return lambda: iq.send(timeout=STEP)

    # RFC 6120 §8.4: an IQ nobody handles → service-unavailable, from the addressee.
    err = await expect_error(unknown_query(domain()), "unknown namespace to the server", "service-unavailable")
    check(err["from"] == domain(), f"error from {err['from']}")
    # RFC 6121 §8.5.2.2.3: the server answers for a bare JID (bob is offline).
    await expect_error(unknown_query(b), "unknown namespace to a bare JID", "service-unavailable")

    # RFC 6121 §8.5.1: message to an account that does not exist.
    nobody = f"nobody@{domain()}"
    c.send_message(mto=nobody, mbody="hello?", mtype="chat")
    err = await next_item(c.errors, "error for a message to an unknown user")
    check(err["error"]["condition"] == "service-unavailable", f"unknown user: {err['error']['condition']}")
    check(err["from"] == nobody, f"error from {err['from']}")

    # RFC 6121 §8.5.3.2.2: IQ to a full JID with no such resource.
    err = await expect_error(lambda: c["xep_0199"].send_ping(jid=f"{b}/nowhere", timeout=STEP),
                             "IQ to an absent resource", "service-unavailable")
    check(err["from"] == f"{b}/nowhere", f"error from {err['from']}")
    await bye(c)


# --- XEP modules (driven by tests/e2e/slixmpp_xeps.rs, with the modules on) ---

async def login_with(i, resource, plugins, presence=True):
    """Like login(), with extra slixmpp plugins registered before connecting;
    with xep_0198, also waits until stream management is enabled."""
    c = Client(f"{user(i)}/{resource}", CONF.password)
    for p in plugins:
        c.register_plugin(p)
    started = c.once("session_start")
    enabled = c.once("sm_enabled") if "xep_0198" in plugins else None
    c.connect(address=("127.0.0.1", CONF.port))
    try:
        await asyncio.wait_for(started, STEP)
        if enabled is not None:
            await asyncio.wait_for(enabled, STEP)
    except asyncio.TimeoutError:
        raise AssertionError(f"{user(i)}/{resource}: no session (or no <enabled/>) with {plugins}") from None
    if presence:
        c.send_presence()
        await c.barrier()
    return c


async def s_sm_resume():
    alice = await login_with(0, "phone", ["xep_0198"])
    check(alice["xep_0198"].sm_id, "stream management enabled without an SM-ID (no resumption)")
    full = alice.boundjid.full
    bob = await login(1, "desk")
    for i in range(50):
        bob.send_message(mto=full, mbody=str(i), mtype="chat")
    got = []
    while len(got) < 10:
        m = await next_item(alice.messages, f"message {len(got)} before the drop")
        got.append(int(m["body"]))
    # The TCP connection dies with messages in flight: no </stream:stream>.
    gone = alice.once("disconnected")
    alice.abort()
    await asyncio.wait_for(gone, STEP)
    for i in range(50, 100):
        bob.send_message(mto=full, mbody=str(i), mtype="chat")
    await bob.barrier()
    resumed = alice.once("session_resumed")
    started = alice.once("session_start")
    alice.connect(address=("127.0.0.1", CONF.port))
    done, _ = await asyncio.wait([resumed, started], timeout=STEP, return_when=asyncio.FIRST_COMPLETED)
    check(resumed in done, f"the stream was not resumed (a new session started: {started in done})")
    check(alice.boundjid.full == full, f"resumed as {alice.boundjid.full}, was {full}")
    while len(got) < 100:
        m = await next_item(alice.messages, f"message {len(got)} after resumption (got {got})")
        got.append(int(m["body"]))
    check(got == list(range(100)), f"each message once and in order; got {got}")
    await nothing_in(alice.messages, "a message delivered twice", 1.0)
    alice.send_message(mto=bob.boundjid.full, mbody="back", mtype="chat")
    m = await next_item(bob.messages, "alice's message after resumption")
    check((m["body"], m["from"].full) == ("back", full), f"got {m['body']!r} from {m['from']}")
    await bye(alice, bob)


async def s_carbons():
    a1 = await login_with(0, "one", ["xep_0280"])
    a2 = await login_with(0, "two", ["xep_0280"])
    bob = await login(1, "b")
    info = await a1["xep_0030"].get_info(jid=domain(), timeout=STEP)
    check("urn:xmpp:carbons:2" in info["disco_info"]["features"], "carbons missing from disco#info")
    received, sent = asyncio.Queue(), asyncio.Queue()
    a2.add_event_handler("carbon_received", received.put_nowait)
    a2.add_event_handler("carbon_sent", sent.put_nowait)
    for c in (a1, a2):
        await c["xep_0280"].enable(timeout=STEP)

    bob.send_message(mto=a1.boundjid.full, mbody="to one", mtype="chat")
    m = await next_item(a1.messages, "bob's message at alice/one")
    check(m["body"] == "to one", f"got {m['body']!r}")
    c = await next_item(received, "the received carbon at alice/two")
    check(c["from"] == user(0), f"carbon from {c['from']}, want the bare {user(0)}")
    inner = c["carbon_received"]
    check((inner["from"], inner["to"], inner["body"]) == (bob.boundjid, a1.boundjid, "to one"),
          f"forwarded: {inner['from']} -> {inner['to']}: {inner['body']!r}")

    a1.send_message(mto=bob.boundjid.full, mbody="to bob", mtype="chat")
    m = await next_item(bob.messages, "alice/one's message at bob")
    check(m["body"] == "to bob", f"got {m['body']!r}")
    c = await next_item(sent, "the sent carbon at alice/two")
    inner = c["carbon_sent"]
    check((inner["to"], inner["body"]) == (bob.boundjid, "to bob"), f"forwarded: {inner['to']}: {inner['body']!r}")

    await a2["xep_0280"].disable(timeout=STEP)
    bob.send_message(mto=a1.boundjid.full, mbody="after disable", mtype="chat")
    await next_item(a1.messages, "bob's message after alice/two disabled carbons")
    await nothing_in(received, "a carbon after disable")
    await bye(a1, a2, bob)


async def s_blocking():
    alice = await login_with(0, "a", ["xep_0191"])
    bob = await login(1, "b")
    res = await alice["xep_0191"].get_blocked(timeout=STEP)
    check(not res["blocklist"]["items"], f"blocklist not empty: {res['blocklist']['items']}")
    pushed = alice.once("blocked")
    await alice["xep_0191"].block(slixmpp.JID(user(1)), timeout=STEP)
    push = await asyncio.wait_for(pushed, STEP)
    check(push["block"]["items"] == {slixmpp.JID(user(1))}, f"block push {push['block']['items']}")
    res = await alice["xep_0191"].get_blocked(timeout=STEP)
    check(res["blocklist"]["items"] == {slixmpp.JID(user(1))}, f"blocklist {res['blocklist']['items']}")

    bob.send_message(mto=user(0), mbody="blocked?", mtype="chat")
    err = await next_item(bob.errors, "the error for a message to a user who blocked bob")
    check(err["error"]["condition"] == "service-unavailable", f"condition {err['error']['condition']}")
    await nothing_in(alice.messages, "a message from a blocked contact")
    alice.send_message(mto=user(1), mbody="to the blocked", mtype="chat")
    err = await next_item(alice.errors, "the error for a message to a blocked contact")
    check(err["error"]["condition"] == "not-acceptable", f"condition {err['error']['condition']}")
    check(err.xml.find(".//{urn:xmpp:blocking:errors}blocked") is not None, f"no <blocked/> in {err}")
    await nothing_in(bob.messages, "a message to a blocked contact")

    await alice["xep_0191"].unblock(slixmpp.JID(user(1)), timeout=STEP)
    bob.send_message(mto=user(0), mbody="unblocked", mtype="chat")
    m = await next_item(alice.messages, "bob's message after unblocking")
    check(m["body"] == "unblocked", f"got {m['body']!r}")
    await bye(alice, bob)


async def s_private():
    """XEP-0049 with slixmpp's own plugin: bookmarks (XEP-0048's element)
    stored, read back by a fresh session, replaced; another user's storage
    is refused."""
    from slixmpp.plugins.xep_0048.stanza import Bookmarks

    def bookmarks(nick):
        b = Bookmarks()
        b.add_conference("room@muc." + domain(), nick, autojoin=True)
        return b

    alice = await login_with(0, "a", ["xep_0049"], presence=False)
    alice["xep_0049"].register(Bookmarks)
    res = await alice["xep_0049"].retrieve("bookmarks", timeout=STEP)
    check(not res["private"]["bookmarks"]["conferences"], f"stored before any set: {res}")
    await alice["xep_0049"].store(bookmarks("hamlet"), timeout=STEP)
    await bye(alice)

    alice = await login_with(0, "b", ["xep_0049"], presence=False)
    alice["xep_0049"].register(Bookmarks)
    res = await alice["xep_0049"].retrieve("bookmarks", timeout=STEP)
    confs = res["private"]["bookmarks"]["conferences"]
    check([(c["jid"], c["nick"], c["autojoin"]) for c in confs]
          == [("room@muc." + domain(), "hamlet", True)], f"after a re-login: {res}")
    await alice["xep_0049"].store(bookmarks("ophelia"), timeout=STEP)
    res = await alice["xep_0049"].retrieve("bookmarks", timeout=STEP)
    confs = res["private"]["bookmarks"]["conferences"]
    check([c["nick"] for c in confs] == ["ophelia"], f"after a replace: {res}")

    bob = await login_with(1, "b", ["xep_0049"], presence=False)
    bob["xep_0049"].register(Bookmarks)
    res = await bob["xep_0049"].retrieve("bookmarks", timeout=STEP)
    check(not res["private"]["bookmarks"]["conferences"], f"bob sees alice's: {res}")
    def others():
        iq = bob.make_iq_get(ito=user(0))
        iq["private"].enable("bookmarks")
        return iq.send(timeout=STEP)
    await expect_error(others, "a get of another user's private storage", "forbidden", "auth")
    await bye(alice, bob)


async def s_time_last():
    """XEP-0202 and XEP-0012 with slixmpp's plugins: the server's time (UTC)
    and uptime, advertised in disco#info; a contact's last activity: 0 while
    online, then the seconds since the logout and its status."""
    alice = await login_with(0, "a", ["xep_0202", "xep_0012"])
    bob = await login(1, "b")
    res = await alice["xep_0202"].get_entity_time(slixmpp.JID(domain()), timeout=STEP)
    check(res["type"] == "result" and res["from"] == domain(), f"time reply {res}")
    tzo = res.xml.find("{urn:xmpp:time}time/{urn:xmpp:time}tzo")
    check(tzo is not None and tzo.text == "+00:00", f"tzo in {res}")
    # Read the text: slixmpp 1.8's get_utc() appends a second "Z" to the
    # XEP-0202 form (`...:35Z`) and fails to parse it.
    text = res.xml.find("{urn:xmpp:time}time/{urn:xmpp:time}utc")
    check(text is not None and text.text.endswith("Z"), f"utc in {res}")
    utc = datetime.datetime.strptime(text.text, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc)
    skew = abs((utc - datetime.datetime.now(datetime.timezone.utc)).total_seconds())
    check(skew < 60, f"server time {utc} is {skew}s off")
    feats = (await alice["xep_0030"].get_info(jid=domain(), timeout=STEP))["disco_info"]["features"]
    for f in ("urn:xmpp:time", "jabber:iq:last"):
        check(f in feats, f"feature {f} missing from {feats}")
    res = await alice["xep_0012"].get_last_activity(slixmpp.JID(domain()), timeout=STEP)
    check(res["type"] == "result" and res["last_activity"]["seconds"] >= 0, f"uptime {res}")

    await subscribe_both(alice, bob)
    res = await alice["xep_0012"].get_last_activity(slixmpp.JID(user(1)), timeout=STEP)
    check(res["last_activity"]["seconds"] == 0, f"bob online: {res}")
    bob.send_presence(ptype="unavailable", pstatus="Gone fishing")
    await bob.barrier()
    await bye(bob)
    # The server records the logout when it sees the connection go.
    for _ in range(50):
        res = await alice["xep_0012"].get_last_activity(slixmpp.JID(user(1)), timeout=STEP)
        if res["last_activity"]["status"]:
            break
        await asyncio.sleep(0.1)
    check(res["last_activity"]["status"] == "Gone fishing", f"bob's status: {res}")
    check(0 <= res["last_activity"]["seconds"] < 30, f"bob's seconds: {res}")
    await bye(alice)


async def s_vcard():
    """XEP-0054 with slixmpp's plugin: a vCard with a photo published, read
    back by a fresh session and by another user, replaced; advertised in
    disco#info; setting another user's is refused."""
    alice = await login_with(0, "a", ["xep_0054"], presence=False)
    me = slixmpp.JID(user(0))
    res = await alice["xep_0054"].get_vcard(me, local=False, timeout=STEP)
    check(not res["vcard_temp"]["FN"], f"a vCard before any set: {res}")
    feats = (await alice["xep_0030"].get_info(jid=domain(), timeout=STEP))["disco_info"]["features"]
    check("vcard-temp" in feats, f"vcard-temp missing from {feats}")
    card = alice["xep_0054"].make_vcard()
    card["FN"] = "Alice Liddell"
    card["NICKNAME"] = "alice"
    card["PHOTO"]["TYPE"] = "image/png"
    card["PHOTO"]["BINVAL"] = b"hello"
    await alice["xep_0054"].publish_vcard(card, timeout=STEP)
    await bye(alice)

    alice = await login_with(0, "b", ["xep_0054"], presence=False)
    res = await alice["xep_0054"].get_vcard(me, local=False, timeout=STEP)
    v = res["vcard_temp"]
    # slixmpp reads NICKNAME as a list (it may hold several).
    check((v["FN"], v["NICKNAME"]) == ("Alice Liddell", ["alice"]), f"after a re-login: {res}")
    check(v["PHOTO"]["BINVAL"] == b"hello", f"photo after a re-login: {res}")

    bob = await login_with(1, "b", ["xep_0054"], presence=False)
    res = await bob["xep_0054"].get_vcard(me, local=False, timeout=STEP)
    check(res["vcard_temp"]["FN"] == "Alice Liddell", f"alice's vCard seen by bob: {res}")
    res = await bob["xep_0054"].get_vcard(slixmpp.JID(user(1)), local=False, timeout=STEP)
    check(not res["vcard_temp"]["FN"], f"bob's own, never set: {res}")

    card = alice["xep_0054"].make_vcard()
    card["FN"] = "Alice"
    await alice["xep_0054"].publish_vcard(card, timeout=STEP)
    res = await bob["xep_0054"].get_vcard(me, local=False, timeout=STEP)
    check(res["vcard_temp"]["FN"] == "Alice" and not res["vcard_temp"]["NICKNAME"],
          f"after a replace: {res}")

    def others():
        card = bob["xep_0054"].make_vcard()
        card["FN"] = "Mallory"
        return bob["xep_0054"].publish_vcard(card, jid=me, timeout=STEP)
    await expect_error(others, "a set of another user's vCard", "forbidden", "auth")
    await bye(alice, bob)


async def s_mam():
    """XEP-0313 with slixmpp's plugin (and XEP-0059 paging): a conversation
    archived on both sides, read back in order by a fresh session page by
    page, each result carrying the stanza-id the recipient saw (XEP-0359);
    a later page sees new messages; the query form; archiving turned off
    by preference keeps nothing."""
    plugins = ["xep_0313", "xep_0059", "xep_0359"]
    a, b = user(0), user(1)
    alice = await login_with(0, "a", plugins)
    bob = await login_with(1, "b", plugins)
    seen_ids = {}
    for i in range(30):
        sender, receiver, to = (alice, bob, b) if i % 2 == 0 else (bob, alice, a)
        sender.send_message(mto=to, mbody=f"m{i}", mtype="chat")
        m = await next_matching(receiver.messages, f"m{i}", lambda m: m["body"] == f"m{i}")
        if receiver is alice:
            sid = m["stanza_id"]
            check(sid["by"] == a and sid["id"], f"stanza-id on alice's copy: {m}")
            seen_ids[f"m{i}"] = sid["id"]
    await bye(alice)

    alice = await login_with(0, "again", plugins)
    feats = (await alice["xep_0030"].get_info(jid=a, timeout=STEP))["disco_info"]["features"]
    check("urn:xmpp:mam:2" in feats, f"urn:xmpp:mam:2 missing from {feats}")
    form = await alice["xep_0313"].get_fields(timeout=STEP)
    names = {f["var"] for f in form["fields"]}
    check({"with", "start", "end"} <= names, f"query form: {names}")
    got = []
    async for m in alice["xep_0313"].iterate(rsm={"max": 7}):
        res = m["mam_result"]
        body = res["forwarded"]["stanza"]["body"]
        got.append(body)
        if body in seen_ids:
            check(res["id"] == seen_ids[body], f"{body}: result id {res['id']} != stanza-id {seen_ids[body]}")
        check(res["forwarded"]["delay"]["stamp"] is not None, f"no delay on {m}")
    check(got == [f"m{i}" for i in range(30)], f"alice's archive in order: {got}")

    # With a filter, newest first: the last page.
    newest = [m async for m in alice["xep_0313"].iterate(
        with_jid=slixmpp.JID(b), reverse=True, rsm={"max": 5}, total=5)]
    bodies = [m["mam_result"]["forwarded"]["stanza"]["body"] for m in newest]
    check(bodies == [f"m{i}" for i in range(29, 24, -1)], f"last page, newest first: {bodies}")
    last = newest[0]["mam_result"]["id"]

    bob.send_message(mto=a, mbody="late", mtype="chat")
    await next_matching(alice.messages, "late", lambda m: m["body"] == "late")
    res = await alice["xep_0313"].retrieve(rsm={"after": last}, timeout=STEP)
    bodies = [r["mam_result"]["forwarded"]["stanza"]["body"] for r in res["mam"]["results"]]
    check(bodies == ["late"], f"after the last page: {bodies}")
    check(res["mam_fin"].xml.get("complete") == "true", f"complete: {res['mam_fin']}")

    # Archiving off: nothing new is kept, and no stanza-id is stamped.
    # (slixmpp's plugin has no preferences call: the IQ is built by hand.)
    iq = alice.make_iq_set()
    iq.append(ET.fromstring("<prefs xmlns='urn:xmpp:mam:2' default='never'/>"))
    await iq.send(timeout=STEP)
    iq = alice.make_iq_get()
    iq.append(ET.fromstring("<prefs xmlns='urn:xmpp:mam:2'/>"))
    prefs = (await iq.send(timeout=STEP)).xml.find("{urn:xmpp:mam:2}prefs")
    check(prefs is not None and prefs.get("default") == "never", f"preferences: {prefs}")
    bob.send_message(mto=a, mbody="unkept", mtype="chat")
    m = await next_matching(alice.messages, "unkept", lambda m: m["body"] == "unkept")
    check(not m["stanza_id"]["id"], f"a stanza-id though not archived: {m}")
    last_id = res["mam_fin"]["rsm"]["last"]
    res = await alice["xep_0313"].retrieve(rsm={"after": last_id}, timeout=STEP)
    check(len(res["mam"]["results"]) == 0, f"kept though archiving is off: {res}")
    await bye(alice, bob)


async def login_fails(jid, password):
    """A login as `jid` with `password` fails (SASL), and the client goes."""
    c = Client(f"{jid}/x", password, "SCRAM-SHA-256")
    all_failed = c.once("failed_all_auth")
    started = c.once("session_start")
    c.connect(address=("127.0.0.1", CONF.port))
    done, _ = await asyncio.wait([all_failed, started], timeout=STEP, return_when=asyncio.FIRST_COMPLETED)
    check(all_failed in done and started not in done, f"{jid}: a session with password {password!r}")
    gone = c.once("disconnected")
    c.disconnect()
    await asyncio.wait_for(gone, STEP)


async def s_register():
    """XEP-0077 with slixmpp's plugin: a new account registered in-band
    before authentication (stream feature, form, set), then logged in on the
    same stream; the registration seen after login; the password changed
    (the old one fails, the new one works); then the registration cancelled
    (<remove/>): the server closes the stream and the account is gone."""
    jid = f"newcomer@{domain()}"
    c = Client(f"{jid}/r", "first-pw")
    c.register_plugin("xep_0077")
    # slixmpp 1.8 queues every stanza but bind until the session starts,
    # the registration IQs included: let them out while registering.
    c._always_send_everything = True
    forms = []

    async def on_register(form):
        forms.append(form)
        resp = c.Iq()
        resp["type"] = "set"
        resp["register"]["username"] = c.boundjid.user
        resp["register"]["password"] = "first-pw"
        await resp.send(timeout=STEP)
        c._always_send_everything = False

    c.add_event_handler("register", on_register)
    started = c.once("session_start")
    c.connect(address=("127.0.0.1", CONF.port))
    try:
        await asyncio.wait_for(started, STEP)
    except asyncio.TimeoutError:
        raise AssertionError(f"no session after registering in-band (forms seen: {len(forms)})") from None
    check(len(forms) == 1, f"{len(forms)} registration forms, want 1")
    fields = forms[0]["register"]["fields"]
    check({"username", "password"} <= fields, f"form fields {fields}")
    check(forms[0]["register"]["instructions"], f"no instructions in {forms[0]}")
    check(isinstance(c.socket, (ssl.SSLObject, ssl.SSLSocket)), "registered without TLS")
    check(c.boundjid.bare == jid, f"bound {c.boundjid.full}")

    res = await c["xep_0077"].get_registration(timeout=STEP)
    check(res["register"]["registered"] and res["register"]["username"] == "newcomer",
          f"after login: {res}")
    feats = (await c["xep_0030"].get_info(jid=domain(), timeout=STEP))["disco_info"]["features"]
    check("jabber:iq:register" in feats, f"jabber:iq:register missing from {feats}")

    await c["xep_0077"].change_password("second-pw", timeout=STEP)
    await bye(c)
    await login_fails(jid, "first-pw")

    c = Client(f"{jid}/r2", "second-pw")
    c.register_plugin("xep_0077")
    started = c.once("session_start")
    c.connect(address=("127.0.0.1", CONF.port))
    await asyncio.wait_for(started, STEP)
    gone = c.once("disconnected")
    res = await c["xep_0077"].cancel_registration(timeout=STEP)
    check(res["type"] == "result", f"cancel: {res}")
    try:
        await asyncio.wait_for(gone, STEP)
    except asyncio.TimeoutError:
        raise AssertionError("the stream stayed open after the account was removed") from None
    await login_fails(jid, "second-pw")


# How many accounts (JIDs on the command line) each scenario uses.
async def pep_login(i, resource, plugins):
    """login_with() whose first presence carries the caps of every PEP
    interest the plugins registered (their +notify features)."""
    c = await login_with(i, resource, plugins, presence=False)
    await c["xep_0115"].update_caps(broadcast=False)
    c.send_presence()
    await c.barrier()
    return c


async def s_pep():
    """XEP-0163 with slixmpp's plugins: the account is a PEP service; a nick
    (XEP-0172) and an avatar (XEP-0084 data + metadata) published by alice
    reach bob as events (his caps ask for them, XEP-0115), and he reads
    the avatar data; XEP-0402 bookmarks (slixmpp has no plugin for them:
    XEP-0060 publish with the XEP-0402 publish-options) read back by alice,
    refused to bob."""
    plugins = ["xep_0060", "xep_0115", "xep_0163", "xep_0084", "xep_0172"]
    a = user(0)
    alice = await pep_login(0, "a", plugins)
    bob = await pep_login(1, "b", plugins)
    await subscribe_both(alice, bob)
    info = (await alice["xep_0030"].get_info(jid=a, local=False, timeout=STEP))["disco_info"]
    check("http://jabber.org/protocol/pubsub#publish-options" in info["features"],
          f"publish-options missing from {info['features']}")
    check(any(i[0] == "pubsub" and i[1] == "pep" for i in info["identities"]),
          f"no pubsub/pep identity in {info['identities']}")

    nick = bob.once("user_nick_publish")
    await alice["xep_0172"].publish_nick("Alice L.", timeout=STEP)
    msg = await asyncio.wait_for(nick, STEP)
    check(msg["from"] == a and "Alice L." in str(msg), f"nick event: {msg}")

    data = b"\x89PNG not really an image"
    avatar_id = alice["xep_0084"].generate_id(data)
    await alice["xep_0084"].publish_avatar(data, timeout=STEP)
    meta = bob.once("avatar_metadata_publish")
    await alice["xep_0084"].publish_avatar_metadata(
        [{"id": avatar_id, "type": "image/png", "bytes": len(data)}], timeout=STEP)
    msg = await asyncio.wait_for(meta, STEP)
    check(avatar_id in str(msg), f"metadata event: {msg}")
    res = await bob["xep_0084"].retrieve_avatar(slixmpp.JID(a), avatar_id, timeout=STEP)
    got = res["pubsub"]["items"]["substanzas"][0]["avatar_data"]["value"]
    check(got == data, f"avatar data read by bob: {got!r}")

    bookmarks = "urn:xmpp:bookmarks:1"
    form = alice["xep_0004"].make_form(ftype="submit")
    form.add_field(var="FORM_TYPE", ftype="hidden",
                   value="http://jabber.org/protocol/pubsub#publish-options")
    form.add_field(var="pubsub#persist_items", value="true")
    form.add_field(var="pubsub#max_items", value="max")
    form.add_field(var="pubsub#send_last_published_item", value="never")
    form.add_field(var="pubsub#access_model", value="whitelist")
    rooms = ["one@muc.localhost", "two@muc.localhost"]
    for room in rooms:
        conf = ET.Element(f"{{{bookmarks}}}conference", name=room, autojoin="true")
        ET.SubElement(conf, f"{{{bookmarks}}}nick").text = "alice"
        await alice["xep_0060"].publish(None, bookmarks, id=room, payload=conf,
                                        options=form, timeout=STEP)
    res = await alice["xep_0060"].get_items(slixmpp.JID(a), bookmarks, timeout=STEP)
    ids = sorted(i["id"] for i in res["pubsub"]["items"]["substanzas"])
    check(ids == rooms, f"alice's bookmarks: {ids}")
    check("autojoin" in str(res), f"bookmark payloads: {res}")
    await expect_error(lambda: bob["xep_0060"].get_items(slixmpp.JID(a), bookmarks, timeout=STEP),
                       "bob reading alice's bookmarks", "not-allowed")
    await bye(alice, bob)


ROLES = {
    "login": 1,
    "wrong_password": 1,
    "roster": 2,
    "subscription": 2,
    "presence": 3,
    "messages": 2,
    "offline": 2,
    "disco_ping": 1,
    "errors": 2,
    "sm_resume": 2,
    "carbons": 2,
    "blocking": 2,
    "time_last": 2,
    "private": 2,
    "vcard": 2,
    "register": 1,
    "mam": 2,
    "pep": 2,
}
SCENARIOS = {name[2:]: fn for name, fn in globals().items() if name.startswith("s_")}
assert set(SCENARIOS) == set(ROLES)


def fail(scenario, reason):
    print(f"FAILED {scenario}: {reason}", file=sys.stderr)
    print("--- client trace (last lines) ---", file=sys.stderr)
    for line in TRACE:
        print(line, file=sys.stderr)
    return 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", required=True, choices=sorted(SCENARIOS))
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--jids", nargs="+", required=True)
    ap.parse_args(namespace=CONF)
    if len(CONF.jids) < ROLES[CONF.scenario]:
        ap.error(f"{CONF.scenario} needs {ROLES[CONF.scenario]} JIDs")
    trace = TraceHandler()
    trace.setFormatter(logging.Formatter("%(relativeCreated)6.0f %(levelname)s %(message)s"))
    logging.basicConfig(level=logging.DEBUG, handlers=[trace])
    try:
        asyncio.run(asyncio.wait_for(SCENARIOS[CONF.scenario](), GLOBAL_TIMEOUT))
    except AssertionError as e:
        return fail(CONF.scenario, e)
    except asyncio.TimeoutError:
        return fail(CONF.scenario, f"no result within {GLOBAL_TIMEOUT} s")
    except IqError as e:
        return fail(CONF.scenario, f"unexpected IQ error: {e.iq}")
    print(f"ok {CONF.scenario}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
