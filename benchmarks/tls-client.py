#!/usr/bin/env python3
# The benchmarks' TLS client (benchmarks/run.sh's sni section, benchmarks/ab.sh's tls load):
#   tls-client.py NAME PORT SECONDS CONCURRENCY [SNI]
# Resolves NAME once (through the enclave's resolver, so egress learns the address), then CONCURRENCY loops of
# connect, handshake with server name SNI (default NAME; the certificate is not verified), GET /, read to the end,
# close, for SECONDS; prints per_second=, ok=, failed=. SECONDS 0: one connection, exit status 0 if it got its 200
# answer.
import socket, ssl, sys, threading, time
name, port, seconds, concurrency = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
sni = sys.argv[5] if len(sys.argv) > 5 else name
address = socket.getaddrinfo(name, port, socket.AF_INET, socket.SOCK_STREAM)[0][4]
context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
context.options |= getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
request = f"GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode()

def one():
    with socket.create_connection(address, timeout=5) as raw, context.wrap_socket(raw, server_hostname=sni) as tls:
        tls.sendall(request)
        answer = b""
        while chunk := tls.recv(4096):
            answer += chunk
    return answer.startswith(b"HTTP/1.1 200")

if seconds == 0:
    try:
        ok = one()
    except Exception as error:
        print(f"refused: {error!r}")
        sys.exit(1)
    print("ok" if ok else "bad answer")
    sys.exit(0 if ok else 1)
counts = {"ok": 0, "failed": 0}
lock = threading.Lock()
deadline = time.monotonic() + seconds

def loop():
    while time.monotonic() < deadline:
        try:
            key = "ok" if one() else "failed"
        except Exception:
            key = "failed"
        with lock:
            counts[key] += 1

started = time.monotonic()
threads = [threading.Thread(target=loop) for _ in range(concurrency)]
for t in threads: t.start()
for t in threads: t.join()
print(f"per_second={counts['ok'] / (time.monotonic() - started):.0f} ok={counts['ok']} failed={counts['failed']} address={address[0]}")
