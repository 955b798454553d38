"""Decentralised NATS auth for tests: an operator, an account with JetStream
and a user, their JWTs signed with nkeys, a server config that trusts them
(memory resolver) and the user's ``.creds`` file, as ``nsc`` would make them."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path

import nkeys


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _keypair(prefix: int):
    seed = nkeys.encode_seed(__import__("os").urandom(32), prefix)
    return nkeys.from_seed(seed), seed


def _jwt(claims: dict, signer) -> str:
    claims = {**claims, "iat": int(time.time()), "iss": signer.public_key.decode()}
    claims["jti"] = base64.b32encode(hashlib.sha256(json.dumps(claims, sort_keys=True).encode()).digest()).decode()
    head = _b64(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    body = _b64(json.dumps(claims).encode())
    sig = _b64(signer.sign(f"{head}.{body}".encode()))
    return f"{head}.{body}.{sig}"


def creds_setup(where: Path) -> tuple[Path, Path]:
    """(server config file, user creds file) in ``where``."""
    operator, _ = _keypair(nkeys.PREFIX_BYTE_OPERATOR)
    account, _ = _keypair(nkeys.PREFIX_BYTE_ACCOUNT)
    system, _ = _keypair(nkeys.PREFIX_BYTE_ACCOUNT)  # JetStream needs a system account
    user, user_seed = _keypair(nkeys.PREFIX_BYTE_USER)
    op_pub, acc_pub, sys_pub, user_pub = (k.public_key.decode() for k in (operator, account, system, user))
    op_jwt = _jwt({"sub": op_pub, "name": "test-operator", "nats": {"type": "operator", "version": 2}}, operator)
    unlimited = {k: -1 for k in ("subs", "data", "payload", "imports", "exports", "conn", "leaf",
                                 "mem_storage", "disk_storage", "streams", "consumer")}
    acc_jwt = _jwt({"sub": acc_pub, "name": "likes-account",
                    "nats": {"limits": {**unlimited, "wildcards": True}, "default_permissions": {"pub": {}, "sub": {}},
                             "type": "account", "version": 2}}, operator)
    sys_jwt = _jwt({"sub": sys_pub, "name": "SYS", "nats": {"limits": {k: -1 for k in ("subs", "data", "payload",
                    "imports", "exports", "conn", "leaf")}, "type": "account", "version": 2}}, operator)
    user_jwt = _jwt({"sub": user_pub, "name": "likes",
                     "nats": {"pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
                              "type": "user", "version": 2}}, account)
    conf = where / "operator.conf"
    conf.write_text(f"operator: {op_jwt}\nsystem_account: {sys_pub}\nresolver: MEMORY\n"
                    f"resolver_preload: {{\n  {acc_pub}: {acc_jwt}\n  {sys_pub}: {sys_jwt}\n}}\n")
    creds = where / "likes.creds"
    creds.write_text("-----BEGIN NATS USER JWT-----\n" f"{user_jwt}\n" "------END NATS USER JWT------\n\n"
                     "-----BEGIN USER NKEY SEED-----\n" f"{user_seed.decode()}\n" "------END USER NKEY SEED------\n")
    creds.chmod(0o600)
    return conf, creds
