"""Worker settings from the environment, including the broker's TLS and SASL credentials.

The embedded broker cannot serve TLS (this tansu build rejects `--cert` with `--key`), so what
is tested here is that the settings become the credentials Faust hands to aiokafka."""

from __future__ import annotations

import ssl
import subprocess

import faust
import pytest
from faust.types.auth import AuthProtocol, SASLMechanism

from streams.service.settings import Settings, SettingsError, declared, markdown


def test_defaults_are_plaintext_and_a_laptop_broker():
    s = Settings.from_env({})
    assert s.broker == "kafka://localhost:9092" and s.broker_credentials() is None


def test_environment_overrides_every_plain_setting():
    s = Settings.from_env({"STARCAST_BROKER": "kafka://k1:9092", "STARCAST_PARTITIONS": "8",
                           "STARCAST_CLOCK": "wall", "STARCAST_API_TOKEN": "t0ken", "STARCAST_STANDBY_REPLICAS": "1"})
    assert (s.broker, s.partitions, s.clock, s.api_token, s.standby_replicas) == ("kafka://k1:9092", 8, "wall", "t0ken", 1)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", d / "key.pem",
                    "-out", d / "cert.pem", "-days", "1", "-subj", "/CN=localhost"], check=True, capture_output=True)
    return d


def test_tls_with_a_private_ca_and_a_client_certificate(certificate):
    s = Settings.from_env({"STARCAST_BROKER_SSL_CAFILE": str(certificate / "cert.pem"),
                           "STARCAST_BROKER_SSL_CERTFILE": str(certificate / "cert.pem"),
                           "STARCAST_BROKER_SSL_KEYFILE": str(certificate / "key.pem")})
    credentials = s.broker_credentials()
    assert isinstance(credentials, faust.SSLCredentials) and credentials.protocol == AuthProtocol.SSL
    context = credentials.context
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert any(c["subject"] == ((("commonName", "localhost"),),) for c in context.get_ca_certs())


def test_sasl_scram_over_tls():
    s = Settings.from_env({"STARCAST_BROKER_SSL": "1", "STARCAST_BROKER_SASL_MECHANISM": "SCRAM-SHA-512",
                           "STARCAST_BROKER_SASL_USERNAME": "starcast", "STARCAST_BROKER_SASL_PASSWORD": "s3cret"})
    credentials = s.broker_credentials()
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol == AuthProtocol.SASL_SSL and credentials.mechanism == SASLMechanism.SCRAM_SHA_512
    assert (credentials.username, credentials.password) == ("starcast", "s3cret")
    assert "s3cret" not in repr(s)  # settings can be logged without the password


def test_sasl_plain_without_tls_and_a_bad_mechanism_refused():
    credentials = Settings.from_env({"STARCAST_BROKER_SASL_USERNAME": "u", "STARCAST_BROKER_SASL_PASSWORD": "p"}
                                    ).broker_credentials()
    assert credentials.protocol == AuthProtocol.SASL_PLAINTEXT and credentials.mechanism == SASLMechanism.PLAIN
    with pytest.raises(ValueError):
        Settings.from_env({"STARCAST_BROKER_SASL_USERNAME": "u", "STARCAST_BROKER_SASL_MECHANISM": "MD5"}
                          ).broker_credentials()


def test_the_worker_app_connects_with_those_credentials():
    from streams.service.app import create_app

    app = create_app(Settings(store="memory://", broker_sasl_username="u", broker_sasl_password="p",
                              broker_sasl_mechanism="SCRAM-SHA-256"))
    assert app.conf.broker_credentials.mechanism == SASLMechanism.SCRAM_SHA_256


@pytest.mark.parametrize("variable, value, allowed", [
    ("STARCAST_CLOCK", "wal", "event or wall"),
    ("STARCAST_PARTITIONS", "0", "an integer >= 1"),
    ("STARCAST_PARTITIONS", "four", "an integer >= 1"),
    ("STARCAST_FAST_FETCH", "maybe", "1 or 0"),
    ("STARCAST_FETCH_WAIT_MS", "-1", "auto or an integer >= 0"),
    ("STARCAST_BROKER", "localhost", "kafka://HOST:PORT"),
    ("STARCAST_STORE", "redis://", "rocksdb:// or memory://"),
])
def test_an_invalid_value_names_the_variable_and_what_it_allows(variable, value, allowed):
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({variable: value})
    assert variable in str(caught.value) and allowed in str(caught.value)


def test_fetch_wait_auto_depends_on_the_fetch_loop_and_applies_only_to_the_embedded_broker():
    assert Settings.from_env({"STARCAST_EMBEDDED_BROKER": "1"}).effective_fetch_wait_ms() == 20
    assert Settings.from_env({"STARCAST_EMBEDDED_BROKER": "1", "STARCAST_FAST_FETCH": "0"}).effective_fetch_wait_ms() == 0
    assert Settings.from_env({"STARCAST_EMBEDDED_BROKER": "1", "STARCAST_FETCH_WAIT_MS": "50"}).effective_fetch_wait_ms() == 50
    assert Settings.from_env({"STARCAST_FETCH_WAIT_MS": "50"}).effective_fetch_wait_ms() == 0


def test_configuration_docs_are_generated_from_the_declaration():
    from pathlib import Path

    docs = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    assert docs.read_text() == markdown(), "regenerate: starcast config --markdown > docs/configuration.md"
    assert all(f"`{s.env}`" in docs.read_text() for _, s in declared())
