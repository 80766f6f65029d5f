"""The S3 client (agent/snapshot/storage.py): against the real S3 server, against a SeaweedFS
with an identity (signatures checked), against AWS's published SigV4 examples, and against a
tiny local HTTP server that fails on purpose (retries)."""

from __future__ import annotations

import base64
import calendar
import hashlib
import mmap
import os
import shutil
import ssl
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import pytest

from agent.snapshot import StorageConfig
from agent.snapshot import storage as storage_module
from agent.snapshot.errors import ConfigError, ObjectMissing, StorageError
from agent.snapshot.storage import Storage, StoredObject, authorization, canonical_query, signing_key
from tests.s3 import BUCKET, stop_server


@pytest.fixture
def no_backoff(monkeypatch):
    monkeypatch.setattr(storage_module, "_backoff", lambda retry: 0.0)


def _counting(monkeypatch, storage: Storage) -> list:
    """Record (verb, method) of every request `storage` makes from now on."""
    calls = []
    original = storage._request

    def request(verb, what, method, path, **kwargs):
        calls.append((verb, method))
        return original(verb, what, method, path, **kwargs)

    monkeypatch.setattr(storage, "_request", request)
    return calls


# --- objects on the real S3 server ------------------------------------------------------------------


def test_put_and_get_whole_and_ranged(raw_storage):
    body = os.urandom(100_000)
    raw_storage.put("blob", body)
    assert raw_storage.get("blob") == body
    assert raw_storage.get("blob", 1000, 5000) == body[1000:6000]
    assert raw_storage.get("blob", 99_990, 10) == body[-10:]
    assert raw_storage.traffic.puts == 1 and raw_storage.traffic.bytes_put == len(body)
    assert raw_storage.traffic.gets == 3 and raw_storage.traffic.bytes_got == len(body) + 5000 + 10


def test_put_takes_any_bytes_like_body_and_odd_names(raw_storage):
    body = os.urandom(5000)
    raw_storage.put("a/b c+d=e&f~g%h", memoryview(body)[1000:2000])
    raw_storage.put("ümlaut/ and spaces", bytearray(body))
    assert raw_storage.get("a/b c+d=e&f~g%h") == body[1000:2000]
    assert raw_storage.get("ümlaut/ and spaces") == body
    assert sorted(raw_storage.list("")) == [("a/b c+d=e&f~g%h", 1000), ("ümlaut/ and spaces", 5000)]
    assert raw_storage.traffic.bytes_put == 6000


def test_empty_object(raw_storage):
    raw_storage.put("empty", b"")
    assert raw_storage.get("empty") == b""
    assert list(raw_storage.list("empty")) == [("empty", 0)]


def test_get_into_a_buffer(raw_storage):
    body = os.urandom(300_000)
    raw_storage.put("blob", body)
    buffer = bytearray(400_000)
    view = raw_storage.get("blob", into=buffer)
    assert isinstance(view, memoryview) and view.nbytes == len(body)
    assert view == body and buffer[: len(body)] == body
    ranged = raw_storage.get("blob", 10, 100, into=buffer)
    assert ranged == body[10:110]
    with mmap.mmap(-1, len(body)) as mapped:  # exactly the size is enough
        view = raw_storage.get("blob", into=mapped)
        assert view == body
        view.release()
    assert raw_storage.traffic.bytes_got == 2 * len(body) + 100


def test_get_into_a_too_small_buffer_fails_and_the_connection_is_replaced(raw_storage):
    raw_storage.put("blob", os.urandom(100_000))
    raw_storage.put("small", b"small")
    with pytest.raises(StorageError, match=r"GET .*blob: the body \(100000 bytes\) is larger than the buffer"):
        raw_storage.get("blob", into=bytearray(99_999))
    assert raw_storage.get("small") == b"small"  # the unread body did not poison the next request


def test_missing_object(raw_storage):
    key = raw_storage.key("not-there")
    with pytest.raises(ObjectMissing, match=key) as caught:
        raw_storage.get("not-there")
    assert caught.value.key == key
    with pytest.raises(ObjectMissing, match=key):
        raw_storage.get("not-there", 0, 10, into=bytearray(10))
    raw_storage.delete("not-there")  # deleting what is not there is no error (S3 semantics)


def test_one_keep_alive_connection_per_thread(raw_storage):
    names = [f"n{index:02d}" for index in range(24)]
    bodies = {name: os.urandom(1000 + index) for index, name in enumerate(names)}
    for name in names:
        raw_storage.put(name, bodies[name])
    first = raw_storage._local.connection.sock
    assert raw_storage.get(names[0]) == bodies[names[0]]
    assert raw_storage._local.connection.sock is first  # reused, not reopened
    with ThreadPoolExecutor(max_workers=8) as pool:
        fetched = dict(zip(names, pool.map(raw_storage.get, names)))
    assert fetched == bodies
    assert raw_storage.traffic.gets == 1 + len(names)


# --- listing ----------------------------------------------------------------------------------------


def test_objects_follow_continuation_tokens(raw_storage, monkeypatch):
    for index in range(10):
        raw_storage.put(f"p/{index:02d}", b"x" * index)
    raw_storage.put("q/other", b"yy")
    raw_storage.put("pp", b"z")
    raw_storage._page_size = 3
    calls = _counting(monkeypatch, raw_storage)
    listed = list(raw_storage.objects("p/"))
    assert [(stored.name, stored.size) for stored in listed] == [(f"p/{index:02d}", index) for index in range(10)]
    assert all(isinstance(stored, StoredObject) for stored in listed)
    assert all(abs(stored.modified - time.time()) < 120 for stored in listed)
    assert calls == [("LIST", "GET")] * 4  # 3 + 3 + 3 + 1
    assert list(raw_storage.list("q/")) == [("q/other", 2)]
    assert [name for name, _size in raw_storage.list("p")] == [f"p/{index:02d}" for index in range(10)] + ["pp"]
    assert len(list(raw_storage.list(""))) == 12
    assert list(raw_storage.list("nothing/")) == []


def test_listing_a_missing_bucket_is_a_storage_error(s3_server):
    storage = Storage(StorageConfig(endpoint=s3_server, bucket=f"dumont-absent-{uuid.uuid4().hex[:12]}", prefix="",
                                    access_key="test", secret_key="test-secret", region="us-east-1"))
    with pytest.raises(StorageError, match="LIST .*NoSuchBucket"):
        list(storage.objects(""))


def test_last_modified_parsing():
    noon = calendar.timegm((2026, 11, 30, 12, 0, 0))
    assert storage_module._unix_time("2026-11-30T12:00:00.000Z") == noon
    assert storage_module._unix_time("2026-11-30T12:00:00Z") == noon
    assert storage_module._unix_time("2026-11-30T12:00:00.250Z") == noon + 0.25
    assert storage_module._unix_time("2026-11-30T13:30:00+01:30") == noon
    with pytest.raises(ValueError):
        storage_module._unix_time("yesterday")


# --- deleting ---------------------------------------------------------------------------------------


def test_delete(raw_storage):
    raw_storage.put("doomed", b"1")
    raw_storage.put("kept", b"2")
    raw_storage.delete("doomed")
    assert list(raw_storage.list("")) == [("kept", 1)]
    with pytest.raises(ObjectMissing):
        raw_storage.get("doomed")


def test_delete_many_in_batches_and_of_missing_names(raw_storage, monkeypatch):
    names = [f"d/{index:02d}" for index in range(8)]
    for name in names:
        raw_storage.put(name, b"x")
    raw_storage.put("kept", b"k")
    monkeypatch.setattr(storage_module, "DELETE_BATCH", 3)
    calls = _counting(monkeypatch, raw_storage)
    raw_storage.delete_many(names + ["d/never-was", "d/nor-this & <that>"])
    assert calls == [("DELETE", "POST")] * 4  # 10 names in batches of 3
    assert list(raw_storage.list("")) == [("kept", 1)]
    raw_storage.delete_many(names)  # all already gone: no error
    raw_storage.delete_many([])


def test_delete_many_failures_name_the_first_key(no_backoff):
    answer = (b'<?xml version="1.0" encoding="UTF-8"?>'
              b'<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
              b"<Deleted><Key>a</Key></Deleted>"
              b"<Error><Key>b</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
              b"<Error><Key>c</Key><Code>InternalError</Code><Message>Try again</Message></Error>"
              b"</DeleteResult>")
    seen = []

    def respond(handler, number):
        seen.append((handler.command, handler.path, handler.headers.get("Content-MD5"), handler.body))
        _reply(handler, 200, answer)

    with _local_s3(respond) as storage:
        with pytest.raises(StorageError, match=r"DELETE b: AccessDenied Access Denied \(2 of 3 objects not deleted\)"):
            storage.delete_many(["a", "b", "c"])
    [(method, path, md5, body)] = seen
    assert method == "POST" and path == "/bucket?delete="
    assert b"<Quiet>true</Quiet>" in body and b"<Object><Key>c</Key></Object>" in body
    assert md5 == base64.b64encode(hashlib.md5(body).digest()).decode()


# --- the bucket -------------------------------------------------------------------------------------


def test_create_bucket_if_missing(s3_server):
    bucket = f"dumont-new-{uuid.uuid4().hex[:12]}"
    storage = Storage(StorageConfig(endpoint=s3_server, bucket=bucket, prefix="repo", access_key="test",
                                    secret_key="test-secret", region="us-east-1"))
    try:
        storage.create_bucket_if_missing()
        storage.create_bucket_if_missing()  # already there: nothing to do
        storage.put("hello", b"world")
        assert list(storage.list("")) == [("hello", 5)]
        assert storage.get("hello") == b"world"
    finally:
        storage.delete_many([name for name, _size in storage.list("")])
        storage._request("DELETE BUCKET", bucket, "DELETE", storage._bucket_path)


# --- signatures -------------------------------------------------------------------------------------

EXAMPLE_ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
EXAMPLE_SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
EXAMPLE_DATE = "20130524T000000Z"
EXAMPLE_HOST = "examplebucket.s3.amazonaws.com"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def _example(method: str, path: str, query: str, extra_headers: dict, payload_hash: str = EMPTY_SHA256) -> str:
    headers = {"Host": EXAMPLE_HOST, "x-amz-date": EXAMPLE_DATE, "x-amz-content-sha256": payload_hash,
               **extra_headers}
    return authorization(method=method, path=path, query=query, headers=headers, payload_hash=payload_hash,
                         amz_date=EXAMPLE_DATE, region="us-east-1", access_key=EXAMPLE_ACCESS_KEY,
                         key=signing_key(EXAMPLE_SECRET_KEY, EXAMPLE_DATE[:8], "us-east-1"))


def test_signature_matches_the_aws_get_object_example():
    """AWS S3 documentation, "Signature Calculations for the Authorization Header", GET Object."""
    assert _example("GET", "/test.txt", "", {"Range": "bytes=0-9"}) == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )


def test_signature_matches_the_other_aws_examples():
    """The same page's PUT Object (a path to encode), GET Bucket Lifecycle (an empty query
    value) and GET Bucket (List Objects, a sorted query)."""
    payload_hash = hashlib.sha256(b"Welcome to Amazon S3.").hexdigest()
    put = _example("PUT", "/" + quote("test$file.text"), "",
                   {"Date": "Fri, 24 May 2013 00:00:00 GMT", "x-amz-storage-class": "REDUCED_REDUNDANCY"},
                   payload_hash)
    assert put.endswith("SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class,"
                        "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd")
    lifecycle = _example("GET", "/", canonical_query([("lifecycle", "")]), {})
    assert lifecycle.endswith("Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543")
    listing = _example("GET", "/", canonical_query([("prefix", "J"), ("max-keys", "2")]), {})
    assert listing.endswith("Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7")


def test_canonical_query_encodes_everything_but_unreserved():
    assert canonical_query([("prefix", "a/b c+d~e_f.g-h"), ("continuation-token", "x=y&z")]) == (
        "continuation-token=x%3Dy%26z&prefix=a%2Fb%20c%2Bd~e_f.g-h"
    )


def test_signing_key_is_cached_per_day(raw_storage):
    first = raw_storage._key_for("20260101")
    assert raw_storage._key_for("20260101") is first
    assert raw_storage._key_for("20260102") != first


@pytest.fixture(scope="module")
def authenticated_s3(tmp_path_factory):
    """A SeaweedFS of our own with one identity (from AWS_* in its environment): it checks
    signatures, as R2 does. The shared one on :8333 has no identity and accepts anything."""
    from bench.snapshot_bench import free_ports

    weed = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))
    data = tmp_path_factory.mktemp("seaweedfs-auth")
    s3_port, *others = free_ports(10, 0)
    names = ["s3.port.grpc", "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
             "filer.port", "filer.port.grpc", "admin.port", "admin.port.grpc"]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "dumont-tests", "AWS_SECRET_ACCESS_KEY": "right-secret"}
    with open(data / "weed.log", "wb") as log:
        process = subprocess.Popen(
            [weed, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false",
             f"-s3.port={s3_port}", *[f"-{name}={port}" for name, port in zip(names, others)],
             "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
             f"-s3.localSocket={data / 's3.sock'}", f"-filer.localSocket={data / 'filer.sock'}"],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
    endpoint = f"http://127.0.0.1:{s3_port}"
    try:
        right = _authenticated(endpoint, "right-secret")
        deadline = time.monotonic() + 30  # it answers in about a second
        while True:
            try:
                right.create_bucket_if_missing()
                break
            except StorageError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"weed mini with an identity did not answer within 30 s; see {data / 'weed.log'}")
                time.sleep(0.2)
        yield endpoint
    finally:
        stop_server(process)


def _authenticated(endpoint: str, secret: str, access_key: str = "dumont-tests") -> Storage:
    return Storage(StorageConfig(endpoint=endpoint, bucket="dumont-auth-tests", prefix="signed", access_key=access_key,
                                 secret_key=secret, region="auto"))


def test_the_right_secret_signs_every_request(authenticated_s3):
    storage = _authenticated(authenticated_s3, "right-secret")
    body = os.urandom(50_000)
    storage.put("dir/blob one", body)
    storage.put("dir/two", b"2")
    assert storage.get("dir/blob one") == body
    assert storage.get("dir/blob one", 100, 200) == body[100:300]
    odd = "dir/odd +=&~%ü$@:,;'()*!<>"  # every one of them must be encoded alike on both sides
    storage.put(odd, b"odd")
    assert storage.get(odd) == b"odd"
    storage._page_size = 1
    assert list(storage.list("dir/")) == [("dir/blob one", len(body)), (odd, 3), ("dir/two", 1)]
    assert list(storage.list("dir/odd +=&")) == [(odd, 3)]
    storage.delete("dir/two")
    storage.delete_many(["dir/blob one", odd, "dir/never-was"])
    assert list(storage.list("")) == []
    with pytest.raises(ObjectMissing):
        storage.get("dir/two")


def test_a_wrong_secret_is_refused(authenticated_s3):
    _authenticated(authenticated_s3, "right-secret").put("secret", b"s")
    wrong = _authenticated(authenticated_s3, "wrong-secret")
    with pytest.raises(StorageError, match="GET signed/secret: SignatureDoesNotMatch"):
        wrong.get("secret")
    with pytest.raises(StorageError, match="PUT signed/other: SignatureDoesNotMatch"):
        wrong.put("other", b"o")
    with pytest.raises(StorageError, match="LIST dumont-auth-tests/signed/: SignatureDoesNotMatch"):
        list(wrong.list(""))
    with pytest.raises(StorageError, match="DELETE 1 objects from signed/secret: SignatureDoesNotMatch"):
        wrong.delete_many(["secret"])
    with pytest.raises(StorageError, match="HEAD dumont-auth-tests: 403"):  # HEAD has no body to name a code
        wrong.create_bucket_if_missing()
    stranger = _authenticated(authenticated_s3, "right-secret", access_key="someone-else")
    with pytest.raises(StorageError, match="GET signed/secret: InvalidAccessKeyId"):
        stranger.get("secret")


# --- failures and retries, against a local HTTP server ----------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as S3 does
    respond = None  # set per server: respond(handler, number)
    count = None  # set per server: a list, one entry per request

    def log_message(self, format, *args):
        pass

    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(length) if length else b""
        number = len(self.count)
        self.count.append(self.command)
        type(self).respond(self, number)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client that gave up on a slow answer is expected here


def _reply(handler, status: int, body: bytes = b"", *, length: int | None = None, headers: dict | None = None):
    handler.send_response(status)
    handler.send_header("Content-Length", str(len(body) if length is None else length))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)
    handler.wfile.flush()


def _s3_error(code: str, message: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message>'
            f"<Resource>/bucket/key</Resource><RequestId>1</RequestId></Error>").encode()


@contextmanager
def _local_s3(respond, tls: ssl.SSLContext | None = None):
    """A Storage whose endpoint is a local server answering with `respond(handler, number)`;
    over TLS with the server context `tls`."""
    handler = type("Handler", (_Handler,), {"respond": staticmethod(respond), "count": []})
    server = _QuietServer(("127.0.0.1", 0), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        scheme = "https" if tls is not None else "http"
        storage = Storage(StorageConfig(endpoint=f"{scheme}://127.0.0.1:{server.server_address[1]}", bucket="bucket",
                                        prefix="", access_key="a", secret_key="s", region="auto"))
        storage.requests = handler.count
        yield storage
    finally:
        server.shutdown()
        server.server_close()


def test_503_twice_then_success(no_backoff):
    def respond(handler, number):
        _reply(handler, 503) if number < 2 else _reply(handler, 200, b"finally")

    with _local_s3(respond) as storage:
        assert storage.get("key") == b"finally"
        assert storage.requests == ["GET"] * 3


def test_a_put_is_sent_whole_again_on_retry(no_backoff):
    bodies = []

    def respond(handler, number):
        bodies.append(handler.body)
        _reply(handler, 500 if number == 0 else 200)

    body = os.urandom(70_000)
    with _local_s3(respond) as storage:
        storage.put("key", memoryview(body))
    assert bodies == [body, body]


def test_always_503_gives_up_after_six_attempts(no_backoff):
    with _local_s3(lambda handler, number: _reply(handler, 503)) as storage:
        with pytest.raises(StorageError, match=r"GET key: 503 Service Unavailable \(gave up after 6 attempts\)"):
            storage.get("key")
        assert storage.requests == ["GET"] * 6


def test_slow_down_is_retried_with_its_code_named(no_backoff):
    def respond(handler, number):
        _reply(handler, 503, _s3_error("SlowDown", "Please reduce your request rate."))

    with _local_s3(respond) as storage:
        with pytest.raises(StorageError, match="PUT key: SlowDown Please reduce your request rate. \\(gave up"):
            storage.put("key", b"x")
        assert len(storage.requests) == 6


def test_request_timeout_code_and_429_are_retried(no_backoff):
    def respond(handler, number):
        if number == 0:
            _reply(handler, 400, _s3_error("RequestTimeout", "Your socket connection timed out."))
        elif number == 1:
            _reply(handler, 429)
        else:
            _reply(handler, 200, b"ok")

    with _local_s3(respond) as storage:
        assert storage.get("key") == b"ok"
        assert len(storage.requests) == 3


def test_a_refusal_is_not_retried_and_names_the_code(no_backoff):
    with _local_s3(lambda handler, number: _reply(handler, 403, _s3_error("AccessDenied", "Access Denied"))) as storage:
        with pytest.raises(StorageError, match="^GET key: AccessDenied Access Denied$"):
            storage.get("key")
        assert storage.requests == ["GET"]


def test_a_no_such_key_body_is_object_missing(no_backoff):
    with _local_s3(lambda handler, number: _reply(handler, 404, _s3_error("NoSuchKey", "gone"))) as storage:
        with pytest.raises(ObjectMissing, match="object key is missing"):
            storage.get("key")


def test_a_body_cut_short_is_retried(no_backoff):
    body = os.urandom(100_000)

    def respond(handler, number):
        if number == 0:
            _reply(handler, 200, body[:40_000], length=len(body))
            handler.close_connection = True  # and hang up mid-body
        else:
            _reply(handler, 200, body)

    with _local_s3(respond) as storage:
        assert storage.get("key") == body
        assert storage.get("key", into=bytearray(len(body))) == body
        assert len(storage.requests) == 3
        assert storage.traffic.bytes_got == 2 * len(body)


def test_a_read_timeout_is_retried(no_backoff):
    def respond(handler, number):
        if number == 0:
            time.sleep(1.0)
        _reply(handler, 200, b"late")

    with _local_s3(respond) as storage:
        storage.read_timeout = 0.2
        assert storage.get("key") == b"late"
        assert len(storage.requests) == 2


def test_a_server_that_closes_idle_connections(no_backoff):
    """Connection: close from the server, then a fresh connection for the next request."""
    def respond(handler, number):
        _reply(handler, 200, b"once", headers={"Connection": "close"})
        handler.close_connection = True

    with _local_s3(respond) as storage:
        assert storage.get("key") == b"once"
        assert storage.get("key") == b"once"
        assert len(storage.requests) == 2


def test_a_kept_connection_the_server_dropped_is_replaced(no_backoff):
    """The server hangs up an idle keep-alive connection without saying so beforehand."""
    def respond(handler, number):
        _reply(handler, 200, b"body")
        handler.close_connection = True

    with _local_s3(respond) as storage:
        assert storage.get("key") == b"body"
        time.sleep(0.1)  # the server closes its end
        assert storage.get("key") == b"body"
        assert len(storage.requests) == 2


def test_a_refused_connection_gives_up(no_backoff):
    with _local_s3(lambda handler, number: None) as storage:
        pass  # the server is gone: its port refuses connections now
    with pytest.raises(StorageError, match=r"GET key: ConnectionRefusedError.*\(gave up after 6 attempts\)"):
        storage.get("key")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple:
    """(certificate file, key file) of a self-signed certificate for 127.0.0.1."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dumont test S3")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                  critical=False)
                   .sign(key, hashes.SHA256()))
    directory = tmp_path_factory.mktemp("tls")
    (directory / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    return str(directory / "cert.pem"), str(directory / "key.pem")


def _server_context(certificate: tuple) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return context


def test_https_with_keep_alive(certificate, no_backoff):
    body = os.urandom(200_000)

    def respond(handler, number):
        _reply(handler, 200, body if handler.command == "GET" else b"")

    with _local_s3(respond, tls=_server_context(certificate)) as storage:
        storage._ssl_context = ssl.create_default_context(cafile=certificate[0])  # trust the test's own CA
        storage.put("key", body)
        assert storage.get("key") == body
        assert storage.get("key", into=bytearray(len(body))) == body
        assert isinstance(storage._local.connection.sock, ssl.SSLSocket)
        assert len(storage.requests) == 3


def test_https_refuses_an_untrusted_certificate_without_retrying(certificate, no_backoff):
    with _local_s3(lambda handler, number: _reply(handler, 200), tls=_server_context(certificate)) as storage:
        with pytest.raises(StorageError, match="GET key: .*CERTIFICATE_VERIFY_FAILED"):
            storage.get("key")
        assert storage.requests == []


def test_backoff_is_capped_full_jitter():
    for retry in range(20):
        delay = storage_module._backoff(retry)
        assert 0 <= delay <= min(storage_module.BACKOFF_CAP, storage_module.BACKOFF_BASE * 2**retry)


# --- configuration ----------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["ftp://127.0.0.1:8333", "127.0.0.1:8333", "s3.example.com",
                                      "http://127.0.0.1:8333/some/path", "http://127.0.0.1:notaport", "http://"])
def test_bad_endpoints(endpoint):
    with pytest.raises(ConfigError, match="endpoint"):
        Storage(StorageConfig(endpoint=endpoint, bucket=BUCKET, prefix="", access_key="a", secret_key="s"))


@pytest.mark.parametrize(("endpoint", "host_header"), [
    ("http://127.0.0.1:8333", "127.0.0.1:8333"),
    ("http://127.0.0.1:8333/", "127.0.0.1:8333"),
    ("https://account.r2.cloudflarestorage.com", "account.r2.cloudflarestorage.com"),
    ("https://account.r2.cloudflarestorage.com:443/", "account.r2.cloudflarestorage.com"),
    ("HTTP://[::1]:9000", "[::1]:9000"),
])
def test_good_endpoints(endpoint, host_header):
    storage = Storage(StorageConfig(endpoint=endpoint, bucket=BUCKET, prefix="", access_key="a", secret_key="s"))
    assert storage._host_header == host_header
