#!/usr/bin/env python3
"""Bulk-create benchmark accounts user1..userN@localhost (password "password")
for Prosody or ejabberd, with SCRAM-SHA-1 credentials computed here.

  make_accounts.py prosody  DATA_DIR N [--iterations 4096]
      Writes DATA_DIR/localhost/accounts/userK.dat in Prosody's internal
      storage format (what mod_auth_internal_hashed of Prosody 0.12 reads:
      salt, iteration_count, stored_key and server_key as hex). Any other
      *.dat file in that directory is removed, so the directory holds
      exactly N accounts.

  make_accounts.py ejabberd OUT_FILE N [--iterations 4096]
      Writes a Mnesia text file for `ejabberdctl load OUT_FILE`
      (mnesia:load_textfile): table passwd {us, password} with
      password = #scram{storedkey, serverkey, salt (base64), hash = sha,
      iterationcount}, the form ejabberd 23.01 keeps with
      auth_password_format: scram.

SCRAM (RFC 5802): SaltedPassword = PBKDF2-HMAC-SHA1(password, salt, i);
StoredKey = SHA1(HMAC(SaltedPassword, "Client Key"));
ServerKey = HMAC(SaltedPassword, "Server Key").
All accounts share one random salt (so one set of keys) unless
--salt-per-account is given: Osprey's `account populate` does the same, and
the load generator caches the salted password per salt, so a SCRAM login
costs the generator a few hashes instead of a full PBKDF2 (which would make
it, not the server, the bottleneck). The server's work per login is the
same either way: it stores keys, it never runs PBKDF2 for SCRAM.
With --salt-per-account, PBKDF2 runs on all CPUs.
"""

import argparse
import base64
import hashlib
import hmac
import os
import sys
import uuid
from multiprocessing import Pool

DOMAIN = "localhost"
PASSWORD = b"password"


def scram_keys(salt: bytes, iterations: int, hash_name: str = "sha1"):
    h = getattr(hashlib, hash_name)
    salted = hashlib.pbkdf2_hmac(hash_name, PASSWORD, salt, iterations)
    client_key = hmac.new(salted, b"Client Key", h).digest()
    stored_key = h(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", h).digest()
    return stored_key, server_key


def _prosody_salt():
    # Prosody uses a UUID string as the salt (the bytes of the string).
    return str(uuid.uuid4())


def _prosody_one(args):
    i, iterations, salt = args
    salt = salt or _prosody_salt()
    stored, server = scram_keys(salt.encode(), iterations)
    return i, salt, stored.hex(), server.hex()


# ejabberd's hash atom -> hashlib's name.
EJABBERD_HASHES = {"sha": "sha1", "sha256": "sha256", "sha512": "sha512"}
EJABBERD_HASH = "sha"


def _ejabberd_one(args):
    i, iterations, salt = args
    salt = salt or os.urandom(16)
    stored, server = scram_keys(salt, iterations, EJABBERD_HASHES[EJABBERD_HASH])
    return i, salt, stored, server


def _pool_map(fn, n, iterations, shared_salt):
    if shared_salt is not None:
        # One derivation, reused for every account.
        _, salt, stored, server = fn((0, iterations, shared_salt))
        return [(i, salt, stored, server) for i in range(1, n + 1)]
    jobs = [(i, iterations, None) for i in range(1, n + 1)]
    if n < 200:
        return [fn(j) for j in jobs]
    with Pool(os.cpu_count() or 1) as pool:
        return pool.map(fn, jobs, chunksize=256)


def lua_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def make_prosody(data_dir: str, n: int, iterations: int, per_account: bool):
    # Host directory name is the host with every non-alphanumeric character
    # %-encoded (util.datamanager); "localhost" needs none.
    acc_dir = os.path.join(data_dir, DOMAIN, "accounts")
    os.makedirs(acc_dir, exist_ok=True)
    wanted = {f"user{i}.dat" for i in range(1, n + 1)}
    for name in os.listdir(acc_dir):
        if name.endswith(".dat") and name not in wanted:
            os.unlink(os.path.join(acc_dir, name))
    shared = None if per_account else _prosody_salt()
    for i, salt, stored, server in _pool_map(_prosody_one, n, iterations, shared):
        body = (
            "return {\n"
            f'\t["iteration_count"] = {iterations};\n'
            f'\t["salt"] = {lua_str(salt)};\n'
            f'\t["server_key"] = {lua_str(server)};\n'
            f'\t["stored_key"] = {lua_str(stored)};\n'
            "};\n"
        )
        path = os.path.join(acc_dir, f"user{i}.dat")
        with open(path + ".tmp", "w") as f:
            f.write(body)
        os.replace(path + ".tmp", path)


def erl_bin(b: bytes) -> str:
    # base64 text never needs escaping inside an Erlang string literal
    return '<<"' + base64.b64encode(b).decode() + '">>'


def make_ejabberd(out: str, n: int, iterations: int, per_account: bool):
    with open(out + ".tmp", "w") as f:
        f.write("{tables,[{passwd,[{attributes,[us,password]}]}]}.\n")
        shared = None if per_account else os.urandom(16)
        for i, salt, stored, server in _pool_map(_ejabberd_one, n, iterations, shared):
            f.write(
                f'{{passwd,{{<<"user{i}">>,<<"{DOMAIN}">>}},'
                f"{{scram,{erl_bin(stored)},{erl_bin(server)},{erl_bin(salt)},"
                f"{EJABBERD_HASH},{iterations}}}}}.\n"
            )
    os.replace(out + ".tmp", out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("server", choices=["prosody", "ejabberd"])
    ap.add_argument("target", help="prosody: data_path; ejabberd: output file")
    ap.add_argument("n", type=int)
    ap.add_argument("--iterations", type=int, default=4096)
    ap.add_argument(
        "--hash",
        choices=sorted(EJABBERD_HASHES),
        default="sha",
        help="ejabberd: the SCRAM hash stored (its auth_scram_hash)",
    )
    ap.add_argument(
        "--salt-per-account",
        action="store_true",
        help="a random salt per account (default: one shared salt)",
    )
    a = ap.parse_args()
    if a.n < 0 or a.iterations < 1:
        ap.error("n must be >= 0 and iterations >= 1")
    global EJABBERD_HASH
    EJABBERD_HASH = a.hash
    if a.server == "prosody":
        make_prosody(a.target, a.n, a.iterations, a.salt_per_account)
    else:
        make_ejabberd(a.target, a.n, a.iterations, a.salt_per_account)
    return 0


if __name__ == "__main__":
    sys.exit(main())
