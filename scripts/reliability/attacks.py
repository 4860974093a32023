"""Hostile traffic on every door (RELIABILITY.md, "Attacks"), against the release binary.

  python3 scripts/reliability/attacks.py [--binary target/release/inference-gateway]

Runs the gateway twice, with API keys off and on (MAX_BODY_BYTES 4 MiB, MAX_QUEUE_SIZE 8,
REQUEST_TIMEOUT 3 s, 2 decode threads, MAX_IMAGE_PIXELS 4 M, gRPC on), and attacks it over
HTTP/1.1, HTTP/2 (h2c, gRPC's port) and gRPC. Each attack checks its own refusal, and then:
- `/health` answers in under 100 ms;
- the server's RSS stays under its RSS before the attack + 8 x the bytes the attacker sent;
- a well-behaved `/predict` gets 200 within twice its quiet latency (best of 5 probes), once the
  attack's own requests are answered or refused.
A fourth check runs last: `SHUTDOWN_DELAY_SECONDS` keeps serving while `/ready` says 503.
Needs: Pillow, grpcio (tritonclient[grpc]) and h2 (scripts/e2e/install-tools.sh installs them).
"""

import argparse
import io
import os
import signal
import socket
import struct
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "e2e"))
import grpc  # noqa: E402
import h2.config  # noqa: E402
import h2.connection  # noqa: E402
import h2.events  # noqa: E402
from PIL import Image  # noqa: E402

from harness import IMAGES, ROOT, check, conclude, free_port, get, predict, start_gateway, wait_until  # noqa: E402

KEY = "attack-suite-key"
MAX_BODY = 4 << 20
GOOD_JPEG = open(os.path.join(IMAGES, "good", "ijg-testorig.jpg"), "rb").read()
SVC = "/inference.GRPCInferenceService/"
# What RSS moves by with no attack at all (allocator arenas, thread stacks, a decoded image).
NOISE = 16 << 20


class Gateway:
    def __init__(self, binary, tmp, keys, **extra):
        self.port, self.grpc_port, self.keys = free_port(), free_port(), keys
        self.log = open(os.path.join(tmp, f"gateway-keys-{keys}.log"), "w")
        env = dict(GRPC_PORT=str(self.grpc_port), MAX_BODY_BYTES=str(MAX_BODY), MAX_QUEUE_SIZE="8",
                   REQUEST_TIMEOUT="3", DECODE_THREADS="2", MAX_IMAGE_PIXELS="4000000", MAX_BATCH_SIZE="4",
                   HANDSHAKE_TIMEOUT="2", GRPC_KEEPALIVE_INTERVAL="2", GRPC_KEEPALIVE_TIMEOUT="1",
                   MAX_CONNECTIONS="48", SEND_TIMEOUT="2")
        env.update(extra)
        if keys:
            env["API_KEYS"] = KEY
        self.proc = start_gateway(binary, self.port, self.log, **env)
        self.url = f"http://127.0.0.1:{self.port}"
        wait_until(lambda: get(f"{self.url}/ready")[0] == 200, 120, "the gateway to be ready")
        self.auth = {"Authorization": f"Bearer {KEY}"} if keys else {}
        self.meta = [("authorization", f"Bearer {KEY}")] if keys else []
        for _ in range(3):
            self.predict_time()
        self.quiet = sorted(self.predict_time()[1] for _ in range(5))[2]

    def rss(self):
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def predict_time(self):
        t = time.monotonic()
        status, _ = predict(self.url, GOOD_JPEG, headers=self.auth, timeout=30)
        return status, time.monotonic() - t

    def health_time(self):
        t = time.monotonic()
        try:
            status = get(f"{self.url}/health", timeout=5)[0]
        except Exception:  # noqa: BLE001 - a refused or timed-out probe fails the check
            status = 0
        return status, time.monotonic() - t

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


def attack(gw, name, run, sent_bytes):
    """Runs `run()` (returns after the attack's own requests are answered), with the checks."""
    before = gw.rss()
    peak = [before]
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], gw.rss())
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    health = []
    prober = threading.Thread(target=lambda: [health.append(gw.health_time()) or time.sleep(0.2) for _ in range(5)])
    prober.start()
    try:
        run()
    finally:
        prober.join()
        probes = [gw.predict_time() for _ in range(5)]
        stop.set()
        watcher.join()
    worst = max(t for _, t in health)
    check(all(s == 200 for s, _ in health) and worst < 0.1,
          f"[{name}] /health during the attack: {len(health)} x 200, slowest {worst * 1e3:.0f} ms")
    budget = before + 8 * sent_bytes + NOISE
    check(peak[0] <= budget, f"[{name}] RSS peak {peak[0] >> 20} MiB <= {budget >> 20} MiB "
                             f"(before {before >> 20} MiB + 8 x {sent_bytes >> 10} KiB sent + 16 MiB)")
    best = min(t for s, t in probes if s == 200) if any(s == 200 for s, _ in probes) else float("inf")
    check(best <= 2 * gw.quiet, f"[{name}] /predict after: 200 in {best * 1e3:.0f} ms "
                                f"(quiet {gw.quiet * 1e3:.0f} ms)")


# ---- inputs ---------------------------------------------------------------------------------


def many_scans_jpeg(size):
    """A 3 MP progressive photo (a test photo re-encoded by Pillow) with its smallest scan
    repeated up to `size` bytes: libjpeg warns of the bogus progression and decodes every copy,
    each a pass over the whole image (~15 000 scans: seconds of a decode thread)."""
    photo = Image.open(os.path.join(ROOT, "server", "tests", "data", "large", "landscape-2048x1536.jpg"))
    buf = io.BytesIO()
    photo.save(buf, "JPEG", progressive=True, quality=90)
    b = buf.getvalue()
    i, scans = 2, []
    while i + 4 <= len(b):
        marker = b[i + 1]
        if marker == 0xDA:
            start = i
            i += 2 + struct.unpack(">H", b[i + 2:i + 4])[0]
            while not (b[i] == 0xFF and b[i + 1] not in (0x00, *range(0xD0, 0xD8))):
                i += 1
            scans.append(b[start:i])
            continue
        if marker == 0xD9:
            break
        i += 2 + struct.unpack(">H", b[i + 2:i + 4])[0]
    scan = min(scans, key=len)
    return b[:i] + scan * ((size - len(b)) // len(scan)) + b[i:]


def gif_screen_bomb(side):
    buf = io.BytesIO()
    Image.new("P", (side, side)).save(buf, "GIF")
    b = bytearray(buf.getvalue())
    b[6:10] = struct.pack("<HH", 1, 1)  # the logical screen says 1x1
    return bytes(b)


def raw_request(port, head, body=b"", wait=5.0):
    """Sends `head` + `body` on a fresh connection; returns (seconds to the answer, answer)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(wait)
    t = time.monotonic()
    s.sendall(head + body)
    try:
        answer = s.recv(65536)
    except socket.timeout:
        answer = b""
    took = time.monotonic() - t
    s.close()
    return took, answer


def grpc_raw(gw, method, message, with_key, timeout=10):
    """One unary call of raw message bytes: (status code name, seconds)."""
    with grpc.insecure_channel(f"127.0.0.1:{gw.grpc_port}", options=[
            ("grpc.max_send_message_length", 64 << 20)]) as ch:
        call = ch.unary_unary(SVC + method, request_serializer=None, response_deserializer=None)
        t = time.monotonic()
        try:
            call(message, timeout=timeout, metadata=gw.meta if with_key else [])
            code = "OK"
        except grpc.RpcError as e:
            code = e.code().name
        return code, time.monotonic() - t


def closed_within(sock, seconds):
    """Seconds until the server closes `sock` (reading whatever it sends), or None."""
    sock.settimeout(0.2)
    t = time.monotonic()
    while time.monotonic() - t < seconds:
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - t
        except socket.timeout:
            continue
        except OSError:
            return time.monotonic() - t
    return None


# ---- the attacks ----------------------------------------------------------------------------


def progressive_scans(gw):
    bomb = many_scans_jpeg(MAX_BODY - 300_000)
    results = []

    def run():
        threads = [threading.Thread(target=lambda: results.append(predict(gw.url, bomb, headers=gw.auth)))
                   for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    attack(gw, f"progressive JPEG of {len(bomb) >> 10} KiB, ~15 000 scans, x 4", run, 4 * len(bomb))
    check([s for s, _ in results] == [415] * 4, f"  each refused 415: {[s for s, _ in results]}")


def gif_frame(gw):
    bomb = gif_screen_bomb(2800)
    got = []
    attack(gw, "GIF 1x1 screen, 2800x2800 frame", lambda: got.append(predict(gw.url, bomb, headers=gw.auth)),
           len(bomb))
    check(got[0][0] == 413, f"  refused 413: {got[0][0]}")


def v2_declared_length(gw):
    head = (f"POST /v2/models/resnet50/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {MAX_BODY + 1}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in gw.auth.items())
            + "\r\n").encode()
    got = []
    attack(gw, "v2 HTTP, declared length over the limit", lambda: got.append(raw_request(gw.port, head, b"{" * 100)),
           200)
    took, answer = got[0]
    check(answer.startswith(b"HTTP/1.1 413") and took < 1, f"  413 before the body: {answer[:12]!r} in {took:.2f} s")


def v2_slow_body(gw):
    head = (f"POST /v2/models/resnet50/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: 600000\r\n" + "".join(f"{k}: {v}\r\n" for k, v in gw.auth.items())
            + "\r\n").encode()
    got = []
    attack(gw, "v2 HTTP, 100 bytes of a 600 KB body", lambda: got.append(raw_request(gw.port, head, b"{" * 100, 8)),
           200)
    took, answer = got[0]
    want = b"HTTP/1.1 504" if not gw.keys or gw.auth else b"HTTP/1.1 401"
    check(answer.startswith(want) and took < 4.5, f"  {want[9:].decode()} by REQUEST_TIMEOUT: {answer[:12]!r} in {took:.2f} s")


def slow_uploads(gw):
    """MAX_QUEUE_SIZE + 4 clients trickle their bodies; complete requests are still admitted."""
    head = ("POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 50000\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in gw.auth.items()) + "\r\n").encode()
    socks = []
    for _ in range(12):
        s = socket.create_connection(("127.0.0.1", gw.port))
        s.sendall(head + b"\xff")
        socks.append(s)
    time.sleep(0.5)  # every upload has begun
    got = []
    attack(gw, "12 slow uploads to /predict", lambda: got.append(gw.predict_time()), 12 * 1000)
    for s in socks:
        s.close()
    check(got[0][0] == 200, f"  a complete request admitted meanwhile: {got[0][0]}")


def grpc_expansion(gw):
    msg = b"\x2a\x00" * (2 << 20)  # 2 M empty `inputs` (4 MiB)
    got = []
    attack(gw, "gRPC ModelInfer, 2 M empty inputs", lambda: got.append(grpc_raw(gw, "ModelInfer", msg, True)),
           len(msg))
    check(got[0][0] == "INVALID_ARGUMENT", f"  refused before decoding: {got[0][0]} in {got[0][1]:.2f} s")


def grpc_big_no_key(gw, method):
    msg = b"\x0a\x00" * (4 << 20)  # 8 MiB
    got = []
    attack(gw, f"gRPC {method}, 8 MiB, no key", lambda: got.append(grpc_raw(gw, method, msg, False)), len(msg))
    want = ("UNAUTHENTICATED",) if gw.keys and method.startswith("Repository") else (
        "RESOURCE_EXHAUSTED", "OUT_OF_RANGE", "INTERNAL", "UNKNOWN", "CANCELLED")
    check(got[0][0] in want, f"  refused: {got[0][0]} in {got[0][1]:.2f} s")


def h2_connect(gw):
    s = socket.create_connection(("127.0.0.1", gw.grpc_port))
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    s.sendall(conn.data_to_send())
    return s, conn


def grpc_trailing_messages(gw):
    """One ServerLive call carrying 10 MiB of messages."""
    got = []

    def run():
        s, conn = h2_connect(gw)
        conn.send_headers(1, [(":method", "POST"), (":path", SVC + "ServerLive"), (":scheme", "http"),
                              (":authority", "x"), ("content-type", "application/grpc"), ("te", "trailers")])
        s.sendall(conn.data_to_send())
        sent, frame = 0, b"\x00\x00\x00\x00\x00" * 3000
        s.settimeout(5)
        deadline, ended = time.monotonic() + 8, False
        try:
            while sent < 10 << 20 and not ended and time.monotonic() < deadline:
                window = min(conn.local_flow_control_window(1), conn.max_outbound_frame_size)
                if window < len(frame):
                    for ev in conn.receive_data(s.recv(65536)):
                        ended |= isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset,
                                                 h2.events.ConnectionTerminated))
                    s.sendall(conn.data_to_send())
                    continue
                conn.send_data(1, frame)
                s.sendall(conn.data_to_send())
                sent += len(frame)
        except Exception:  # noqa: BLE001 - the server ended the stream or the connection
            pass
        got.append(sent)
        s.close()
    attack(gw, "gRPC ServerLive with 10 MiB of trailing messages", run, 10 << 20)
    check(got[0] < 1 << 20, f"  cut off after {got[0] >> 10} KiB of 10 MiB")


def grpc_silent(gw):
    socks = [socket.create_connection(("127.0.0.1", gw.grpc_port)) for _ in range(10)]
    closed = []
    attack(gw, "gRPC port, 10 silent TCP connections", lambda: closed.extend(closed_within(s, 6) for s in socks), 0)
    ok = all(c is not None for c in closed)
    check(ok, f"  closed by the handshake timeout (2 s): {['%.1f' % c if c else 'open' for c in closed][:3]}...")
    for s in socks:
        s.close()


def grpc_bare_preface(gw):
    s = socket.create_connection(("127.0.0.1", gw.grpc_port))
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")  # empty SETTINGS
    closed = []
    attack(gw, "gRPC port, a bare HTTP/2 preface that answers no PING", lambda: closed.append(closed_within(s, 8)), 0)
    check(closed[0] is not None, f"  closed by the keepalive (2 s + 1 s): {closed[0]}")
    s.close()


def unread_answers(gw):
    """HTTP/1.1: 400 pipelined `/metrics` requests whose answers the client never reads (its
    receive buffer 4 KiB). The server's write blocks; SEND_TIMEOUT (2 s here) closes the
    connection, where before it waited for the reader for good."""
    n, got = 400, []
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", gw.port))
    s.sendall(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n" * n)

    def run():
        time.sleep(5)
        s.settimeout(20)
        data = b""
        try:
            while chunk := s.recv(1 << 20):
                data += chunk
        except OSError:
            pass
        got.append(data.count(b"HTTP/1.1 200"))
        s.close()
    attack(gw, "HTTP/1.1, 400 pipelined answers never read", run, 0)
    check(got[0] < n, f"  closed by the send timeout after {got[0]} of {n} answers")


def grpc_made_you_reset(gw):
    """HTTP/2 "MadeYouReset" (2025): each stream opened, then made invalid (a WINDOW_UPDATE that
    overflows its window), so the server resets it itself (RST_STREAM FLOW_CONTROL_ERROR). h2's
    cap on such resets (1 024, h2's default; tonic's default turned it off) must end the
    connection with a GOAWAY; 4 000 are tried."""
    s, conn = h2_connect(gw)
    head = [(":method", "POST"), (":path", SVC + "ServerLive"), (":scheme", "http"), (":authority", "x"),
            ("content-type", "application/grpc"), ("te", "trailers")] + gw.meta
    got = []

    def goaway_in(data):
        while len(data) >= 9:
            length = int.from_bytes(data[:3], "big")
            if data[3] == 0x7 and len(data) >= 17:
                return data[13:17].hex(), b""  # its error code
            if len(data) < 9 + length:
                break
            data = data[9 + length:]
        return False, data

    def run():
        pending, sent, seen = b"", 0, False
        s.settimeout(5)
        try:
            while sent < 4000 and not seen:
                sid = conn.get_next_available_stream_id()
                conn.send_headers(sid, head, end_stream=True)
                s.sendall(conn.data_to_send() + b"\x00\x00\x04\x08\x00" + struct.pack(">II", sid, 0x7FFFFFFF))
                sent += 1
                try:
                    pending += s.recv(1 << 16, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    pass
                seen, pending = goaway_in(pending)
            s.settimeout(3)
            while not seen:
                chunk = s.recv(1 << 16)
                if not chunk:
                    break
                seen, pending = goaway_in(pending + chunk)
        except OSError:
            pass
        got.append((sent, seen))
        s.close()
    attack(gw, "gRPC port, streams the server is made to reset (MadeYouReset)", run, 0)
    sent, code = got[0]
    check(code and sent < 2000, f"  GOAWAY (error {code}) after {sent} streams made to reset")


def v2_shape(gw):
    """Shapes with entries that are not integers: refused, not read as the integers among them
    (`[1, "x", 3, 224, 224]` was once taken for `[1, 3, 224, 224]`)."""
    got = []
    zeros = ",".join(["0"] * (3 * 224 * 224))
    for shape in ('[1, "x", 3, 224, 224]', "[1, null, 3, 224, 224]", "[1, 3, 224, 224, {}]",
                  "[" + ",".join(["0"] * 100000) + "]"):
        body = ('{"inputs":[{"name":"input","datatype":"FP32","shape":%s,"data":[%s]}]}' % (shape, zeros)).encode()
        head = (f"POST /v2/models/resnet50/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in gw.auth.items())
                + "\r\n").encode()
        got.append(raw_request(gw.port, head, body, 30)[1][:12])
    check(all(a == b"HTTP/1.1 400" for a in got), f"[v2 malformed shapes] each refused 400: {got}")


def v2_json_expansion(gw):
    """4 MiB of JSON that a generic JSON tree would hold at ~16x: 2 M one-digit numbers, then
    1.3 M empty strings."""
    for what, data in (("1.9 M numbers", ",".join(["0"] * (1900 << 10))),
                       ("1.3 M empty strings", ",".join(['""'] * (1300 << 10)))):
        body = ('{"inputs":[{"name":"input","datatype":"FP32","shape":[1,3,224,224],"data":[%s]}]}'
                % data).encode()
        head = (f"POST /v2/models/resnet50/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in gw.auth.items())
                + "\r\n").encode()
        got = []
        attack(gw, f"v2 JSON of {what} ({len(body) >> 10} KiB)",
               lambda: got.append(raw_request(gw.port, head, body, 30)[1][:12]), len(body))
        check(got[0] == b"HTTP/1.1 400", f"  refused 400: {got[0]!r}")


def connection_cap(gw):
    socks = []
    for _ in range(48):
        socks.append(socket.create_connection(("127.0.0.1", gw.port)))
    time.sleep(0.2)
    took, answer = raw_request(gw.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    check(b"503" in answer[:12] and b"too_many_connections" in answer,
          f"[connection cap, 48 idle] the 49th is refused at once: {answer[:12]!r} in {took * 1e3:.0f} ms")
    closed = [closed_within(s, 12) for s in socks[:1]]
    check(closed[0] is not None, f"  an idle connection is closed by HANDSHAKE_TIMEOUT (2 s here), the header timeout: {closed[0]}")
    for s in socks:
        s.close()
    wait_until(lambda: gw.health_time()[0] == 200, 15, "the cap to free")
    check(gw.health_time()[0] == 200, "  served again once the idle connections are closed")


def repository_loads(gw):
    """Four loads at once: one reload, every caller answered with its result."""
    def reloads():
        text = get(f"{gw.url}/metrics")[1].decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("model_reloads_total{"))
    before = reloads()
    statuses = []

    def load():
        head = ("POST /v2/repository/models/resnet50/load HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                + "".join(f"{k}: {v}\r\n" for k, v in gw.auth.items()) + "\r\n").encode()
        statuses.append(raw_request(gw.port, head, wait=120)[1][:12])
    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(all(s == b"HTTP/1.1 200" for s in statuses), f"[repository loads x 4] all answered 200: {statuses}")
    check(reloads() - before <= 2, f"  coalesced: {reloads() - before:.0f} reloads for 4 requests")


def drain_delay(binary, tmp):
    gw = Gateway(binary, tmp, False, SHUTDOWN_DELAY_SECONDS="3")
    gw.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    try:
        ready = get(f"{gw.url}/ready")[0]
    except Exception as e:  # noqa: BLE001 - urllib raises on 503
        ready = getattr(e, "code", 0)
    status, _ = gw.predict_time()
    check(ready == 503 and status == 200, f"[SHUTDOWN_DELAY_SECONDS=3] /ready {ready} and /predict {status} after SIGTERM")
    code = gw.proc.wait(timeout=60)
    check(code == 0, f"  exited {code} after the delay and the drain")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "inference-gateway"))
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="attacks-")
    for keys in (False, True):
        gw = Gateway(args.binary, tmp, keys)
        print(f"\n== API keys {'on' if keys else 'off'}; quiet /predict {gw.quiet * 1e3:.0f} ms", flush=True)
        for a in (progressive_scans, gif_frame, v2_declared_length, v2_slow_body, slow_uploads, grpc_expansion,
                  grpc_trailing_messages, grpc_silent, grpc_bare_preface, grpc_made_you_reset, unread_answers,
                  v2_shape, v2_json_expansion):
            a(gw)
        for method in ("ServerLive", "RepositoryIndex"):
            grpc_big_no_key(gw, method)
        if not keys:
            connection_cap(gw)
        repository_loads(gw)
        check(gw.stop() == 0, "the gateway exits 0 at SIGTERM")
    drain_delay(args.binary, tmp)
    conclude(tmp, "attack checks")


if __name__ == "__main__":
    main()
