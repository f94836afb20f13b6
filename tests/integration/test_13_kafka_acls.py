"""Least-privilege ACLs (issue 11): on a SASL_SSL broker with StandardAuthorizer
(allow.everyone.if.no.acl.found=false) and a super user, every program runs as its own SCRAM
principal with only the ACLs `noticecast acls --role ROLE` lists, applied with `--apply` by the
super user after `noticecast topics create` (the super user's too: neither the CLI role nor the
daemons may create topics).  With them: the CLI publishes, adds and lists subscribers and lists
the DLQ; the webhooks daemon delivers to a real HTTP receiver; the mailer sends to a real SMTP
server.  Then, per role, one ACL is deleted (by the super user, with AdminClient.delete_acls):
the CLI exits 77 naming the resource; a daemon started without it logs an error naming it,
answers /readyz 503 naming it, and recovers by itself once the ACL is granted again.

librdkafka 2.0 cannot express TRANSACTIONAL_ID ACLs: `acls --apply` then creates the others,
names the ones it could not (exit 69) with the kafka-acls.sh command, and the test creates
those with AdminClient, as an operator would with that command.  A newer librdkafka creates
them all (exit 0); both are accepted."""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid

import pytest
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType,
                                   AdminClient, ResourcePatternType, ResourceType)

import secure_kafka
from conftest import describe, free_port, unique_prefix, write_config
from daemon_env import Daemon, binary, wait_for
from mailer_support import MAILER_DEFAULTS, SMTP_DEFAULTS, Mail
from mailer_support import notice as mail_notice
from smtp_server import SMTPTestServer
from webhook_receiver import Always, WebhookReceiver
from webhooks_support import make_secret

EX_OK, EX_UNAVAILABLE, EX_NOPERM = 0, 69, 77
ROLES = ("cli", "webhooks", "mailer")
WAIT = 90  # a bound on waiting, not a performance assertion (the suite also runs under ASan)


@pytest.fixture(scope="module")
def sk(tmp_path_factory):
    with secure_kafka.running(tmp_path_factory.mktemp("acl-broker"), "sasl_ssl", users=ROLES,
                              authorizer=True) as b:
        yield b


def _acl_row(line: str) -> tuple:
    """(principal, host, permission, operation, resource type, pattern, name) of a listing line."""
    f = line.split("\t")
    assert len(f) == 7, f"not an ACL line: {line!r}"
    return tuple(f)


def _binding(row: tuple) -> AclBinding:
    principal, host, _perm, op, rtype, pattern, name = row
    return AclBinding(ResourceType[rtype if rtype != "CLUSTER" else "BROKER"], name,
                      ResourcePatternType[pattern], principal, host, AclOperation[op],
                      AclPermissionType.ALLOW)


def _filter(row: tuple) -> AclBindingFilter:
    b = _binding(row)
    return AclBindingFilter(b.restype, b.name, b.resource_pattern_type, b.principal, b.host,
                            b.operation, b.permission_type)


class World:
    """One prefix, one consumer group per daemon, one configuration per principal (identical
    but for [kafka]), a receiver and an SMTP server."""

    def __init__(self, sk, tmp):
        self.sk, self.tmp = sk, tmp
        self.prefix = unique_prefix()
        self.wh_group = f"acl-wh-{uuid.uuid4().hex[:8]}"
        self.ml_group = f"acl-ml-{uuid.uuid4().hex[:8]}"
        self.admin = AdminClient(sk.client_conf())
        self.daemons: list = []
        self.rx = WebhookReceiver(name="acl-rx").start()
        secret = make_secret()
        self.hook = self.rx.route("/hook", Always(), [secret])
        sdir = tmp / "secrets"
        sdir.mkdir()
        self.partner_secret = sdir / "p1.secret"
        self.partner_secret.write_text(secret + "\n")
        self.unsub_secret = sdir / "unsubscribe.secret"
        self.unsub_secret.write_text(uuid.uuid4().hex * 2 + "\n")
        for f in (self.partner_secret, self.unsub_secret):
            os.chmod(f, 0o600)
        self.smtp = SMTPTestServer().start()
        self.conf = {u: self._write(u) for u in ("admin",) + ROLES}

    def _write(self, user: str):
        port = free_port()
        kafka = dict(self.sk.kafka_section(user), **{"bootstrap.servers": self.sk.bootstrap})
        return write_config(
            self.tmp / f"{user}.conf", self.sk.bootstrap, prefix=self.prefix,
            kafka=kafka, topics={"partitions": 2}, producer={"timeout_ms": 20000},
            webhooks={"group_id": self.wh_group, "listen": "127.0.0.1:0", "retry_schedule": "1s",
                      "shutdown_timeout": "5s"},
            **{"partner.p1": {"url": self.hook, "secret_file": str(self.partner_secret),
                              "timeout_ms": 2000}},
            mailer=dict(MAILER_DEFAULTS, group_id=self.ml_group, listen=f"127.0.0.1:{port}",
                        unsubscribe_url="https://example.gov/unsubscribe",
                        unsubscribe_secret_file=str(self.unsub_secret), shutdown_timeout="5s"),
            smtp=dict(SMTP_DEFAULTS, port=self.smtp.port))

    def cli(self, user: str, *args, timeout: float = 120) -> subprocess.CompletedProcess:
        argv = [binary("noticecast"), "-C", str(self.conf[user].path), *map(str, args)]
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)

    def acls(self, role: str) -> list:
        cp = self.cli("admin", "acls", "--role", role, "--principal", f"User:{role}")
        assert cp.returncode == EX_OK, describe(cp)
        return [_acl_row(line) for line in cp.stdout.splitlines()]

    def find(self, role: str, op: str, rtype: str, name_prefix: str = "") -> tuple:
        rows = [r for r in self.acls(role) if r[3] == op and r[4] == rtype and r[6].startswith(name_prefix)]
        assert rows, f"no {op} {rtype} {name_prefix}* ACL for {role}: {self.acls(role)}"
        return rows[0]

    def create_acls(self, rows) -> None:
        for _b, fut in self.admin.create_acls([_binding(r) for r in rows]).items():
            fut.result()

    def delete_acl(self, row) -> None:
        deleted = []
        for _f, fut in self.admin.delete_acls([_filter(row)]).items():
            deleted += fut.result()
        assert len(deleted) == 1, f"deleting {row}: {deleted}"

    def daemon(self, role: str) -> Daemon:
        d = Daemon(binary(f"noticecast-{role}"), self.conf[role].path,
                   self.tmp / f"{role}-{len(self.daemons) + 1}.log")
        self.daemons.append(d)
        return d

    def publish(self, notices: list) -> subprocess.CompletedProcess:
        f = self.tmp / f"batch-{uuid.uuid4().hex[:6]}.ndjson"
        f.write_text("".join(json.dumps(n) + "\n" for n in notices))
        return self.cli("cli", "publish", f)

    def close(self) -> None:
        for d in self.daemons:
            d.cleanup()
        self.rx.stop()
        self.smtp.close()
        for d in self.daemons:
            print(d.tail(60))


@pytest.fixture(scope="module")
def world(sk, tmp_path_factory):
    w = World(sk, tmp_path_factory.mktemp("acl-world"))
    try:
        for user in ("admin",) + ROLES:
            cp = w.cli(user, "topics", "create")
            assert cp.returncode == (EX_OK if user == "admin" else EX_NOPERM), describe(cp)
        for role in ROLES:
            _apply(w, role)
        yield w
    finally:
        w.close()


def _apply(w: World, role: str) -> None:
    """`acls --apply` as the super user; what librdkafka could not create is created here."""
    want = w.acls(role)
    cp = w.cli("admin", "acls", "--role", role, "--principal", f"User:{role}", "--apply")
    created = [_acl_row(line[len("created\t"):]) for line in cp.stdout.splitlines()]
    missing = [r for r in want if r not in created]
    if cp.returncode == EX_UNAVAILABLE:
        assert missing and all(r[4] == "TRANSACTIONAL_ID" for r in missing), describe(cp)
        for r in missing:
            assert f"--transactional-id '{r[6]}'" in cp.stderr, describe(cp)
        w.create_acls(missing)
    else:
        assert cp.returncode == EX_OK and not missing, describe(cp)


def _not_ready_naming(d: Daemon, what: str) -> None:
    last = None

    def check():
        nonlocal last
        if not d.alive():
            raise AssertionError(f"daemon exited ({d.proc.returncode})\n{d.tail()}")
        last = d.get("/readyz")
        return last[0] == 503 and what in last[1]

    wait_for(check, WAIT, f"/readyz 503 naming {what!r}", 0.3, lambda: f"last: {last}\n{d.tail()}")


def test_roles_listed_least_privilege(world):
    """Literal names where the programs use known ones; prefixes only for generated ids; no
    role but the super user's creates topics; IdempotentWrite only for the daemons."""
    p = world.prefix
    cli = world.acls("cli")
    assert ("User:cli", "*", "ALLOW", "WRITE", "TOPIC", "LITERAL", f"{p}notices.news") in cli
    assert ("User:cli", "*", "ALLOW", "WRITE", "TRANSACTIONAL_ID", "PREFIXED", "noticecast-cli-") in cli
    wh = world.acls("webhooks")
    assert ("User:webhooks", "*", "ALLOW", "READ", "GROUP", "LITERAL", world.wh_group) in wh
    assert ("User:webhooks", "*", "ALLOW", "READ", "GROUP", "PREFIXED", world.wh_group + ".") in wh
    ml = world.acls("mailer")
    assert ("User:mailer", "*", "ALLOW", "WRITE", "TRANSACTIONAL_ID", "PREFIXED",
            world.ml_group + ".planner-") in ml
    for rows in (cli, wh, ml):
        assert not [r for r in rows if r[3] == "CREATE"], rows
        assert not [r for r in rows if r[5] == "PREFIXED" and r[4] == "TOPIC"], rows


def test_cli_works_with_its_acls(world):
    cp = world.publish([mail_notice("news", "ACL check")])
    assert cp.returncode == EX_OK, describe(cp)
    cp = world.cli("cli", "subscribers", "add", "--email", "ana@example.org", "--frequency",
                   "immediate")
    assert cp.returncode == EX_OK, describe(cp)
    cp = world.cli("cli", "subscribers", "list")
    assert cp.returncode == EX_OK and "ana@example.org" in cp.stdout, describe(cp)
    cp = world.cli("cli", "dlq", "list")
    assert cp.returncode == EX_OK, describe(cp)


def test_daemons_work_with_their_acls(world):
    wh = world.daemon("webhooks")
    ml = world.daemon("mailer")
    wh.wait_ready(WAIT)
    ml.wait_ready(WAIT)
    n = mail_notice("news", "Delivered under least privilege")
    cp = world.publish([n])
    assert cp.returncode == EX_OK, describe(cp)
    world.rx.wait_for_ids("/hook", [n["id"]], timeout=WAIT, extra=lambda: wh.tail())

    def mailed():
        return [m for m in (Mail(r, 0) for r in world.smtp.messages())
                if "ana@example.org" in m.rcpt and "Delivered under least privilege" in m.subject]

    wait_for(mailed, WAIT, "the immediate email to ana@example.org", 0.3, lambda: ml.tail())
    assert "level=error" not in wh.log() + ml.log(), wh.tail() + ml.tail()
    for d in (wh, ml):
        assert d.terminate() == 0, d.tail()


def test_cli_without_one_acl_exits_77_naming_it(world):
    row = world.find("cli", "WRITE", "TOPIC", f"{world.prefix}notices.news")
    world.delete_acl(row)
    try:
        cp = world.publish([mail_notice("news", "Refused")])
        assert cp.returncode == EX_NOPERM, describe(cp)
        assert f"not authorized to write topic {world.prefix}notices.news" in cp.stderr, describe(cp)
        assert "noticecast acls --role cli --principal User:cli" in cp.stderr, describe(cp)
    finally:
        world.create_acls([row])
    cp = world.publish([mail_notice("news", "Allowed again")])
    assert cp.returncode == EX_OK, describe(cp)


def test_cli_reader_group_denied_is_named(world):
    row = world.find("cli", "DESCRIBE", "GROUP")
    world.delete_acl(row)
    try:
        cp = world.cli("cli", "subscribers", "list")
        assert cp.returncode == EX_NOPERM, describe(cp)
        assert f"not authorized to read group {row[6]}" in cp.stderr, describe(cp)
    finally:
        world.create_acls([row])


def test_webhooks_without_its_group_acl_names_it_and_heals(world):
    row = world.find("webhooks", "READ", "GROUP", world.wh_group)
    assert row[5] == "LITERAL"
    world.delete_acl(row)
    d = world.daemon("webhooks")
    try:
        # The whole line (to its newline): a line is written in pieces, and a read may fall
        # between them (CI once saw it cut after "User:").
        m = d.wait_log(rf'level=error [^\n]*not authorized to read group {re.escape(world.wh_group)} '
                       r'[^\n]*\n', timeout=WAIT, what="an error line naming the group")
        assert "noticecast acls --role webhooks --principal User:webhooks" in d.log(), d.tail()
        assert m
        _not_ready_naming(d, f"group {world.wh_group}")
    finally:
        world.create_acls([row])
    d.wait_ready(WAIT)  # granted again: it joins the group by itself
    assert d.terminate() == 0, d.tail()


def test_mailer_without_its_transactional_id_acl_names_it_and_heals(world):
    row = world.find("mailer", "WRITE", "TRANSACTIONAL_ID")
    world.delete_acl(row)
    d = world.daemon("mailer")
    try:
        d.wait_log(rf'not authorized to write transactional id {re.escape(world.ml_group)}\.planner-',
                   timeout=WAIT, what="a line naming the transactional id")
        assert "noticecast acls --role mailer --principal User:mailer" in d.log(), d.tail()
        st, body = d.get("/readyz")
        assert st == 503, (st, body, d.tail())
        assert d.alive(), d.tail()
    finally:
        world.create_acls([row])
    d.wait_ready(WAIT)  # a new producer once the ACL is there
    assert d.terminate() == 0, d.tail()


def test_apply_needs_alter_on_the_cluster(world):
    """A role's own principal cannot grant itself anything: exit 77, naming why."""
    cp = world.cli("cli", "acls", "--role", "cli", "--principal", "User:cli", "--apply")
    assert cp.returncode == EX_NOPERM, describe(cp)
    assert "not authorized to create ACLs (needs ALTER on the cluster)" in cp.stderr, describe(cp)
    assert "created\t" not in cp.stdout, describe(cp)


@pytest.mark.parametrize("args, field", [
    ((), "--role"),
    (("--role", "root", "--principal", "User:x"), "--role"),
    (("--role", "cli"), "--principal"),
    (("--role", "cli", "--principal", "cli"), "--principal"),
    (("--role", "cli", "--principal", "User:x", "--host", ""), "--host"),
])
def test_usage_errors_name_the_field(tmp_path, args, field):
    cfg = write_config(tmp_path / "n.conf", "127.0.0.1:9")
    cp = subprocess.run([binary("noticecast"), "-C", str(cfg.path), "acls", *args],
                        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    assert cp.returncode == 64, describe(cp)
    assert f"acls: {field}:" in cp.stderr, describe(cp)
    cp = subprocess.run([binary("noticecast"), "acls", "-h"], stdin=subprocess.DEVNULL,
                        capture_output=True, text=True, timeout=30)
    assert cp.returncode == EX_OK and "--role" in cp.stdout and not cp.stderr, describe(cp)
