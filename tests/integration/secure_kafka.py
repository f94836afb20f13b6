"""A secured Kafka broker for the integration tests: a throwaway CA, certificates, SCRAM users.

API (kept stable: other test modules build on it):

  Pki(dir)                      a fresh test CA in dir (openssl CLI; RSA 2048, PEM files)
    .ca                         Path of the CA certificate (PEM) -- what ssl.ca.location names
    .issue(name, server=False)  -> Cert(name, cert, key): a certificate signed by this CA with
                                subject CN=<name>; server=True adds subjectAltName
                                DNS:localhost, IP:127.0.0.1 (serverAuth and clientAuth); the
                                key is unencrypted PKCS#8 PEM, mode 0600
    .pkcs12(cert, password)     -> Path of a PKCS#12 keystore holding cert, its key and the CA
  Two Pki()s are two unrelated CAs: a certificate of one is untrusted by a broker of the other.

  start(var_dir, mode="sasl_ssl"|"ssl", users=("app",), authorizer=False, env=None)
                                -> SecureKafka, started (.stop() stops it and purges its data);
                                env: more kafka.sh settings (KAFKA_VERSION=4.4.0, ...)
  running(var_dir, mode, **kw)  the same as a context manager (stopped also on failure); a test
                                module shares one broker through a module-scoped fixture:

      @pytest.fixture(scope="module")
      def sk(tmp_path_factory):
          with secure_kafka.running(tmp_path_factory.mktemp("sasl"), "sasl_ssl") as b:
              yield b

  SecureKafka attributes and methods:
    .mode, .bootstrap ("127.0.0.1:PORT"), .broker (conftest.Broker), .pki (Pki), .dir
    .admin                      the super user's name ("admin"); in ssl mode the CN of the
                                admin client certificate; the broker itself is "broker"
    .users                      {name: password} of the SCRAM users (sasl_ssl; admin included)
                                / {name: Cert} of the client certificates (ssl; admin included)
    .principal(user)            "User:<user>" (both modes map to the bare name)
    .password_file(user)        Path of a 0600 file holding user's SCRAM password (+ newline)
    .kafka_section(user="app")  {key: value} for a noticecast [kafka] section (without
                                bootstrap.servers): security.protocol, sasl.mechanisms,
                                sasl.username, sasl.password_file (never the password itself),
                                ssl.ca.location; in ssl mode ssl.certificate.location and
                                ssl.key.location instead of the SASL keys
    .client_conf(user=None)     a confluent_kafka configuration dict (bootstrap.servers
                                included) for user, default the super user: pass it to
                                conftest's admin_for / watermarks / consume_all (conf=...)
    .secrets()                  every secret string a log must never show (passwords, the
                                base64 body of every private key)

Broker layout (deploy/local/kafka.sh with KAFKA_EXTRA_PROPS, KAFKA_FORMAT_ARGS, KAFKA_READY=log):
  * sasl_ssl: the client listener SASL_SSL://127.0.0.1:PORT offers only SASL_SSL with
    SCRAM-SHA-512; brokers talk to each other over it too, as the super user admin.  The SCRAM
    users are created by `kafka-storage format --add-scram` (KRaft keeps them in its metadata).
  * ssl: the client listener SSL://127.0.0.1:PORT requires a client certificate
    (ssl.client.auth=required); ssl.principal.mapping.rules turn "CN=app" into User:app.  The
    broker's own certificate (CN=broker) serves for inter-broker traffic.
  * The CONTROLLER listener stays PLAINTEXT on loopback (127.0.0.1:CONTROLLER_PORT): only the
    broker's own controller traffic uses it.  Clients cannot reach the broker without TLS.
  * authorizer=True: StandardAuthorizer, allow.everyone.if.no.acl.found=false, super.users =
    the admin user, the broker's principal and User:ANONYMOUS -- the latter only because the
    KRaft controller listener is PLAINTEXT (its requests arrive unauthenticated); the client
    listener never yields ANONYMOUS (SCRAM or a client certificate is required).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets as _secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from conftest import Broker, free_port_pair

__all__ = ["Pki", "Cert", "SecureKafka", "start", "running", "MODES", "ADMIN", "BROKER_CN"]

MODES = ("sasl_ssl", "ssl")
ADMIN = "admin"
BROKER_CN = "broker"
MECHANISM = "SCRAM-SHA-512"
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
# "CN=app,O=x" and "CN=app" -> app; anything else keeps the full DN
PRINCIPAL_RULES = "RULE:^CN=([^,]+).*$/$1/,DEFAULT"
READY_TIMEOUT = 90


def _openssl(*args: str, cwd: Path) -> None:
    cp = subprocess.run(["openssl", *args], cwd=cwd, stdin=subprocess.DEVNULL,
                        capture_output=True, text=True, timeout=60)
    if cp.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed ({cp.returncode}):\n{cp.stderr}")


@dataclass
class Cert:
    name: str
    cert: Path
    key: Path


class Pki:
    """A throwaway certificate authority in `dir` (created if missing)."""

    def __init__(self, dir: Path, name: str = "noticecast test CA"):
        self.dir = Path(dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca = self.dir / "ca.crt"
        self.ca_key = self.dir / "ca.key"
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "2",
                 "-subj", f"/CN={name}", "-keyout", str(self.ca_key), "-out", str(self.ca),
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=self.dir)
        os.chmod(self.ca_key, 0o600)
        self._serial = int.from_bytes(_secrets.token_bytes(8), "big")

    def issue(self, name: str, server: bool = False) -> Cert:
        key, csr, crt = (self.dir / f"{name}.{ext}" for ext in ("key", "csr", "crt"))
        ext = self.dir / f"{name}.ext"
        lines = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment"]
        if server:
            lines += ["extendedKeyUsage=serverAuth,clientAuth", "subjectAltName=DNS:localhost,IP:127.0.0.1"]
        else:
            lines += ["extendedKeyUsage=clientAuth"]
        ext.write_text("\n".join(lines) + "\n")
        _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                 "-keyout", str(key), "-out", str(csr), cwd=self.dir)
        os.chmod(key, 0o600)
        self._serial += 1
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(self.ca), "-CAkey", str(self.ca_key),
                 "-set_serial", str(self._serial), "-days", "2", "-sha256", "-extfile", str(ext),
                 "-out", str(crt), cwd=self.dir)
        return Cert(name, crt, key)

    def pkcs12(self, cert: Cert, password: str) -> Path:
        out = self.dir / f"{cert.name}.p12"
        _openssl("pkcs12", "-export", "-in", str(cert.cert), "-inkey", str(cert.key),
                 "-certfile", str(self.ca), "-name", cert.name, "-passout", f"pass:{password}",
                 "-out", str(out), cwd=self.dir)
        os.chmod(out, 0o600)
        return out


def _token() -> str:
    # SCRAM passwords go through kafka.sh's blank-split KAFKA_FORMAT_ARGS and the
    # [name=...,password=...] syntax: hex only
    return _secrets.token_hex(16)


class SecureKafka:
    def __init__(self, var_dir: Path, mode: str, users, authorizer: bool, env: dict | None):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self.mode = mode
        self.authorizer = authorizer
        self.dir = Path(var_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.pki = Pki(self.dir / "pki")
        self.admin = ADMIN
        self._store_pw = _token()
        self.broker_cert = self.pki.issue(BROKER_CN, server=True)
        self.keystore = self.pki.pkcs12(self.broker_cert, self._store_pw)
        names = [ADMIN] + [u for u in users if u != ADMIN]
        if mode == "sasl_ssl":
            self.users = {u: f"{u}-{_token()}" for u in names}
        else:
            self.users = {u: self.pki.issue(u) for u in names}
        port, cport = free_port_pair()
        props = self.dir / "secure.properties"
        props.write_text(self._props(port))
        benv = {"KAFKA_EXTRA_PROPS": str(props), "KAFKA_READY": "log"}
        if mode == "sasl_ssl":
            benv["KAFKA_FORMAT_ARGS"] = " ".join(
                f"--add-scram {MECHANISM}=[name={u},password={pw}]" for u, pw in self.users.items())
        benv.update(env or {})
        self.broker = Broker(self.dir / "var", port, cport, env=benv)
        self.bootstrap = self.broker.bootstrap

    # --- broker side ---------------------------------------------------------------------------

    @property
    def _listener(self) -> str:
        return "SASL_SSL" if self.mode == "sasl_ssl" else "SSL"

    def _props(self, port: int) -> str:
        lst = self._listener
        p = {
            "listeners": f"{lst}://127.0.0.1:{port},CONTROLLER://127.0.0.1:{{cport}}",
            "advertised.listeners": f"{lst}://127.0.0.1:{port}",
            "inter.broker.listener.name": lst,
            "listener.security.protocol.map": f"{lst}:{lst},CONTROLLER:PLAINTEXT",
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": str(self.keystore),
            "ssl.keystore.password": self._store_pw,
            "ssl.key.password": self._store_pw,
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.pki.ca),
            "ssl.endpoint.identification.algorithm": "https",
        }
        if self.mode == "sasl_ssl":
            jaas = (f'org.apache.kafka.common.security.scram.ScramLoginModule required '
                    f'username="{ADMIN}" password="{self.users[ADMIN]}";')
            p.update({
                "sasl.enabled.mechanisms": MECHANISM,
                "sasl.mechanism.inter.broker.protocol": MECHANISM,
                f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config": jaas,
            })
        else:
            p.update({"ssl.client.auth": "required", "ssl.principal.mapping.rules": PRINCIPAL_RULES})
        if self.authorizer:
            supers = [self.principal(ADMIN), self.principal(BROKER_CN), "User:ANONYMOUS"]
            p.update({"authorizer.class.name": AUTHORIZER, "allow.everyone.if.no.acl.found": "false",
                      "super.users": ";".join(supers)})
        return "".join(f"{k}={v}\n" for k, v in p.items())

    def _start(self) -> "SecureKafka":
        # the controller port is known only now: fill it into the listeners line
        props = Path(self.broker.extra_env["KAFKA_EXTRA_PROPS"])
        props.write_text(props.read_text().replace("{cport}", str(self.broker.controller_port)))
        self.broker.up()
        try:
            self._wait_serving()
        except BaseException:
            self.broker.down(purge=True)
            raise
        return self

    def _wait_serving(self) -> None:
        """The log said "started"; wait (bounded) until the super user gets metadata over TLS."""
        admin = AdminClient(self.client_conf())
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                md = admin.list_topics(timeout=5)
                if md.brokers:
                    return
            except KafkaException as e:
                err = e
            else:
                err = "no brokers in metadata"
            if time.monotonic() > deadline:
                raise RuntimeError(f"secured broker ({self.mode}) not serving after {READY_TIMEOUT}s: "
                                   f"{err}\n{self.broker.log_tail()}")
            time.sleep(0.5)

    def stop(self) -> None:
        self.broker.down(purge=True)

    # --- client side ---------------------------------------------------------------------------

    def principal(self, user: str) -> str:
        return f"User:{user}"

    def password_file(self, user: str = "app") -> Path:
        if self.mode != "sasl_ssl":
            raise ValueError("password files exist only in sasl_ssl mode")
        path = self.dir / "secrets" / f"{user}.password"
        path.parent.mkdir(mode=0o700, exist_ok=True)
        path.write_text(self.users[user] + "\n")
        os.chmod(path, 0o600)
        return path

    def kafka_section(self, user: str = "app") -> dict:
        kv = {"security.protocol": self._listener, "ssl.ca.location": str(self.pki.ca)}
        if self.mode == "sasl_ssl":
            kv.update({"sasl.mechanisms": MECHANISM, "sasl.username": user,
                       "sasl.password_file": str(self.password_file(user))})
        else:
            c = self.users[user]
            kv.update({"ssl.certificate.location": str(c.cert), "ssl.key.location": str(c.key)})
        return kv

    def client_conf(self, user: str | None = None) -> dict:
        user = user or ADMIN
        conf = {"bootstrap.servers": self.bootstrap, "security.protocol": self._listener,
                "ssl.ca.location": str(self.pki.ca)}
        if self.mode == "sasl_ssl":
            conf.update({"sasl.mechanisms": MECHANISM, "sasl.username": user,
                         "sasl.password": self.users[user]})
        else:
            c = self.users[user]
            conf.update({"ssl.certificate.location": str(c.cert), "ssl.key.location": str(c.key)})
        return conf

    def secrets(self) -> list:
        out = [self._store_pw]
        if self.mode == "sasl_ssl":
            out += list(self.users.values())
        keys = [self.broker_cert.key, self.pki.ca_key]
        keys += [c.key for c in self.users.values() if isinstance(c, Cert)]
        for k in keys:
            out += _key_lines(k)
        return out


def _key_lines(key: Path) -> list:
    """The base64 lines of a PEM private key: any of them in a log means the key leaked."""
    return [ln for ln in key.read_text().splitlines() if ln and not ln.startswith("-----")
            and re.fullmatch(r"[A-Za-z0-9+/=]{40,}", ln)]


def start(var_dir: Path, mode: str = "sasl_ssl", users=("app",), authorizer: bool = False,
          env: dict | None = None) -> SecureKafka:
    return SecureKafka(var_dir, mode, users, authorizer, env)._start()


@contextlib.contextmanager
def running(var_dir: Path, mode: str = "sasl_ssl", **kw):
    sk = start(var_dir, mode, **kw)
    try:
        yield sk
    finally:
        sk.stop()
