#!/usr/bin/env python3
"""Minimal raw-socket XMPP client to check a benchmark server by hand.

  xmpp_check.py --port 15222 login user1 [--mech PLAIN|SCRAM-SHA-1|SCRAM-SHA-256] [--starttls]
  xmpp_check.py --port 15222 message user1 user2 [--mech ...] [--starttls]

'login' authenticates, binds a resource and pings the server.
'message' logs both users in, makes the receiver available, sends a
<message/> from the first to the second user's bare JID and waits for it.
Exit status 0 on success; the SASL mechanisms offered are printed.
Domain "localhost", password "password" (override with --domain/--password).
"""

import argparse
import base64
import hashlib
import hmac
import os
import socket
import ssl
import sys
import time
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

NS_STREAM = "http://etherx.jabber.org/streams"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_SESSION = "urn:ietf:params:xml:ns:xmpp-session"
NS_CLIENT = "jabber:client"


class Fail(Exception):
    pass


class Conn:
    def __init__(self, host, port, domain, timeout):
        self.domain = domain
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.deadline_s = timeout
        self.queue = []

    def send(self, data):
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def open_stream(self):
        self.parser = ET.XMLPullParser(events=("start", "end"))
        self.depth = 0
        self.queue = []
        self.send(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
            f"xmlns:stream='{NS_STREAM}' to='{self.domain}' version='1.0'>"
        )
        return self.read_until(lambda e: e.tag == f"{{{NS_STREAM}}}features")

    def _pump(self):
        data = self.sock.recv(65536)
        if not data:
            raise Fail("server closed the connection")
        self.parser.feed(data)
        for ev, el in self.parser.read_events():
            if ev == "start":
                self.depth += 1
            else:
                self.depth -= 1
                if self.depth == 1:
                    self.queue.append(el)

    def read(self):
        while not self.queue:
            self._pump()
        return self.queue.pop(0)

    def read_until(self, pred):
        end = time.monotonic() + self.deadline_s
        while time.monotonic() < end:
            el = self.read()
            if el.tag == f"{{{NS_STREAM}}}error":
                raise Fail("stream error: " + ET.tostring(el).decode())
            if pred(el):
                return el
        raise Fail("timeout")

    def starttls(self):
        self.send(f"<starttls xmlns='{NS_TLS}'/>")
        el = self.read_until(lambda e: e.tag.startswith(f"{{{NS_TLS}}}"))
        if el.tag != f"{{{NS_TLS}}}proceed":
            raise Fail("STARTTLS refused")
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # self-signed benchmark certificate
        self.sock = ctx.wrap_socket(self.sock, server_hostname=self.domain)
        return self.sock.version()

    def sasl_result(self):
        return self.read_until(lambda e: e.tag.startswith(f"{{{NS_SASL}}}"))

    def auth(self, user, password, mech):
        if mech == "PLAIN":
            payload = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
            self.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{payload}</auth>")
            el = self.sasl_result()
        elif mech in ("SCRAM-SHA-1", "SCRAM-SHA-256"):
            h = hashlib.sha1 if mech == "SCRAM-SHA-1" else hashlib.sha256
            cnonce = base64.b64encode(os.urandom(18)).decode()
            bare = f"n={user},r={cnonce}"
            self.send(
                f"<auth xmlns='{NS_SASL}' mechanism='{mech}'>"
                + base64.b64encode(("n,," + bare).encode()).decode()
                + "</auth>"
            )
            el = self.sasl_result()
            if el.tag != f"{{{NS_SASL}}}challenge":
                raise Fail(f"{mech}: expected challenge, got {el.tag}")
            first = base64.b64decode(el.text or "").decode()
            attrs = dict(kv.split("=", 1) for kv in first.split(","))
            if not attrs["r"].startswith(cnonce):
                raise Fail("bad server nonce")
            salted = hashlib.pbkdf2_hmac(
                h().name, password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"])
            )
            ckey = hmac.new(salted, b"Client Key", h).digest()
            stored = h(ckey).digest()
            final_wo = f"c=biws,r={attrs['r']}"
            amsg = f"{bare},{first},{final_wo}".encode()
            csig = hmac.new(stored, amsg, h).digest()
            proof = bytes(a ^ b for a, b in zip(ckey, csig))
            self.send(
                f"<response xmlns='{NS_SASL}'>"
                + base64.b64encode(
                    (final_wo + ",p=" + base64.b64encode(proof).decode()).encode()
                ).decode()
                + "</response>"
            )
            el = self.sasl_result()
            skey = hmac.new(salted, b"Server Key", h).digest()
            ssig = base64.b64encode(hmac.new(skey, amsg, h).digest()).decode()
            if el.tag == f"{{{NS_SASL}}}success":
                v = base64.b64decode(el.text or "").decode()
                if v != "v=" + ssig:
                    raise Fail(f"server signature mismatch: {v!r}")
        else:
            raise Fail("unsupported mechanism " + mech)
        if el.tag != f"{{{NS_SASL}}}success":
            raise Fail(f"{mech} auth failed: " + ET.tostring(el).decode())

    def bind(self, resource):
        feats = self.open_stream()
        self.send(
            f"<iq type='set' id='b1'><bind xmlns='{NS_BIND}'><resource>{escape(resource)}"
            "</resource></bind></iq>"
        )
        el = self.read_until(lambda e: e.get("id") == "b1")
        if el.get("type") != "result":
            raise Fail("bind failed: " + ET.tostring(el).decode())
        jid = el.find(f".//{{{NS_BIND}}}jid").text
        sess = feats.find(f"{{{NS_SESSION}}}session")
        if sess is not None and sess.find(f"{{{NS_SESSION}}}optional") is None:
            self.send(f"<iq type='set' id='s1'><session xmlns='{NS_SESSION}'/></iq>")
            el = self.read_until(lambda e: e.get("id") == "s1")
            if el.get("type") != "result":
                raise Fail("session failed")
        return jid

    def close(self):
        try:
            self.send("</stream:stream>")
            self.sock.close()
        except OSError:
            pass


def login(a, user, resource):
    c = Conn(a.host, a.port, a.domain, a.timeout)
    feats = c.open_stream()
    info = {}
    if a.starttls:
        if feats.find(f"{{{NS_TLS}}}starttls") is None:
            raise Fail("STARTTLS not offered")
        info["tls"] = c.starttls()
        feats = c.open_stream()
    mechs = [m.text for m in feats.iter(f"{{{NS_SASL}}}mechanism")]
    info["mechanisms"] = mechs
    info["starttls_offered"] = feats.find(f"{{{NS_TLS}}}starttls") is not None
    if a.mech not in mechs:
        raise Fail(f"{a.mech} not offered (offered: {mechs})")
    c.auth(user, a.password, a.mech)
    info["jid"] = c.bind(resource)
    return c, info


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--domain", default="localhost")
    ap.add_argument("--password", default="password")
    ap.add_argument("--mech", default="SCRAM-SHA-1")
    ap.add_argument("--starttls", action="store_true")
    ap.add_argument("--timeout", type=float, default=10)
    ap.add_argument("cmd", choices=["login", "message"])
    ap.add_argument("users", nargs="+")
    a = ap.parse_args()
    try:
        if a.cmd == "login":
            c, info = login(a, a.users[0], "check")
            c.send("<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
            el = c.read_until(lambda e: e.get("id") == "p1")
            info["ping"] = el.get("type")
            c.close()
            print(f"OK login port={a.port} mech={a.mech} {info}")
        else:
            if len(a.users) != 2:
                raise Fail("message needs SENDER RECEIVER")
            rx, rinfo = login(a, a.users[1], "rx")
            rx.send("<presence/>")
            tx, tinfo = login(a, a.users[0], "tx")
            body = "bench-check-" + base64.b16encode(os.urandom(6)).decode()
            to = f"{a.users[1]}@{a.domain}"
            tx.send(f"<message to='{to}' type='chat' id='m1'><body>{body}</body></message>")
            el = rx.read_until(
                lambda e: e.tag == f"{{{NS_CLIENT}}}message"
                and e.findtext(f"{{{NS_CLIENT}}}body") == body
            )
            print(f"OK message port={a.port} mech={a.mech} from={el.get('from')} "
                  f"to={el.get('to')} body={body} tls={tinfo.get('tls')}")
            tx.close()
            rx.close()
    except (Fail, OSError, KeyError, ValueError) as e:
        print(f"FAIL {a.cmd} port={a.port} mech={a.mech}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
