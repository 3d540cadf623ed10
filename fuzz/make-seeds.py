#!/usr/bin/env python3
"""Writes the seed corpus in fuzz/corpus/<target>/ (run once; the seeds are kept in git).

Seeds are small and meaningful: real tunnel headers (docs/tunnel-protocol.md), DNS queries and answers captured from
dnsmasq 2.90 (tests/Egress.Core.Tests/Dns/Vectors), compression pointers, EDNS, truncated and pipelined frames, and
real enclave.toml files (samples/, the README, the configuration tests). Crash inputs found later go to
fuzz/corpus/<target>/regressions/ and are not written here.
"""
import pathlib
import re
import struct

root = pathlib.Path(__file__).resolve().parent
repo = root.parent
corpus = root / "corpus"


def write(target, name, data):
    path = corpus / target / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())


# --- tunnel: request and response headers (version 1) ---------------------------------------------------------------
def tcp_request(family, address, port, hint=b""):
    body = bytes([family]) + address + struct.pack(">H", port) + bytes([len(hint)]) + hint
    return bytes([1, 1]) + struct.pack(">H", len(body)) + body


def response(status, detail=b""):
    return bytes([1, status, len(detail)]) + detail


write("tunnel", "request-tcp4", tcp_request(4, bytes([198, 18, 0, 10]), 443))
write("tunnel", "request-tcp4-hint", tcp_request(4, bytes([198, 18, 0, 10]), 443, b"api.example.com"))
write("tunnel", "request-tcp6-hint-and-relay", tcp_request(6, bytes.fromhex("20010db8000000000000000000000011"), 8443, b"www.b.test") + b"GET / HTTP/1.1\r\n")
write("tunnel", "request-dns", bytes([1, 2, 0, 0]))
write("tunnel", "request-dns-and-query", bytes([1, 2, 0, 0, 0, 24]) + bytes.fromhex("100101000001000000000000016104746573740000010001"))
write("tunnel", "request-bad-version", bytes([3]) + tcp_request(4, bytes([198, 18, 0, 10]), 443)[1:])
# version 2: the connection id leads the TCP body; the response echoes the version
write("tunnel", "request-v2-tcp4-hint", bytes([2, 1]) + struct.pack(">H", 8 + 8 + 15) + bytes.fromhex("0123456789abcdef")
      + tcp_request(4, bytes([198, 18, 0, 10]), 443, b"api.example.com")[4:])
write("tunnel", "request-v2-dns", bytes([2, 2, 0, 0]))
write("tunnel", "response-v2-ok-and-frames", bytes([2, 0, 0]) + bytes([0, 0, 0, 2]) + b"hi" + bytes([1, 0, 0, 1, 0]))
write("tunnel", "request-oversize", bytes([1, 1, 0x01, 0x2d]))
write("tunnel", "request-bad-hint", tcp_request(4, bytes([198, 18, 0, 10]), 443, b"a b"))
write("tunnel", "response-ok", response(0))

# --- tunnel-frames: one direction of a version 2 TCP stream after Ok -------------------------------------------------
def data(payload):
    return bytes([0]) + struct.pack(">I", len(payload))[1:] + payload


def end(cause):
    return bytes([1, 0, 0, 1, cause])


write("tunnel-frames", "data-then-fin", data(b"GET / HTTP/1.1\r\n\r\n") + end(0))
write("tunnel-frames", "data-then-rst", data(bytes(range(256)) * 4) + end(1))
write("tunnel-frames", "every-cause", b"".join(data(bytes([c])) for c in range(6)) + end(5))
write("tunnel-frames", "unknown-cause", data(b"x") + end(0x63))
write("tunnel-frames", "no-end", data(b"truncated"))
write("tunnel-frames", "inside-payload", bytes([0, 0, 0x10, 0]) + b"short")
write("tunnel-frames", "huge-length", bytes([0, 0xFF, 0xFF, 0xFF]) + b"abc")
write("tunnel-frames", "empty-data", bytes([0, 0, 0, 0]) + end(0))
write("tunnel-frames", "unknown-type", bytes([2, 0, 0, 1, 0]))
write("tunnel-frames", "end-bad-length", bytes([1, 0, 0, 2, 0, 0]))
write("tunnel-frames", "bytes-after-end", end(0) + data(b"after"))

# --- denial-report: the payload of a denial report stream after Ok (docs/tunnel-protocol.md, "Denial reports") --------
def denial(kind, count, seconds, reason, subject=b""):
    return bytes([kind]) + struct.pack(">IH", count, seconds) + bytes([len(reason)]) + reason + bytes([len(subject)]) + subject


write("denial-report", "golden", denial(1, 12, 10, b"never_learned", b"198.51.100.7:443") + b"\0")
write("denial-report", "every-kind", denial(1, 2, 10, b"internal_range", b"[2001:db8::1]:80") + denial(2, 1, 10, b"name_not_allowed", b"evil.example A")
      + denial(3, 1, 10, b"not_allowed", b"198.51.100.7:443 server name other.example") + denial(1, 9, 10, b"various") + b"\0")
write("denial-report", "unknown-kind", denial(200, 1, 0, b"x_1", b"a future kind") + b"\0")
write("denial-report", "longest-fields", denial(1, 0xFFFFFFFF, 0xFFFF, b"a" * 32, b"~" * 200) + b"\0")
write("denial-report", "empty", b"\0")
write("denial-report", "no-end", denial(2, 3, 10, b"name_not_allowed", b"x.example A"))
write("denial-report", "zero-count", bytes([1, 0, 0, 0, 0]))
write("denial-report", "bad-reason", denial(1, 1, 1, b"Never") + b"\0")
write("denial-report", "control-in-subject", denial(2, 1, 1, b"name_not_allowed", b"a\nb") + b"\0")
write("denial-report", "subject-too-long", bytes([1, 0, 0, 0, 1, 0, 1, 1]) + b"a" + bytes([201]) + b"a" * 201 + b"\0")
write("denial-report", "bytes-after-end", b"\0" + denial(1, 1, 1, b"never_learned"))
write("tunnel", "response-denied", response(1, b"198.18.0.99:443 is not in the allowlist"))
write("tunnel", "response-refused-utf8", response(2, "connection refused by d\u00e9j\u00e0.test \u4e2d".encode()))
write("tunnel", "response-failure-and-relay", response(8, b"upstream reset") + b"HTTP/1.1 200 OK\r\n")

# --- DNS: dnsmasq captures ------------------------------------------------------------------------------------------
vectors = (repo / "tests/Egress.Core.Tests/Dns/Vectors/DnsVectors.cs").read_text()
captured = dict(re.findall(r'public const string (\w+) = "([0-9a-f]+)";', vectors))
queries = {n: bytes.fromhex(v) for n, v in captured.items() if n.endswith("Query")}
responses = {n: bytes.fromhex(v) for n, v in captured.items() if n.endswith("Response")}
for name, data in queries.items():
    write("dns-query", name, data)
for name, data in responses.items():
    write("dns-response", name, data)

# Queries the forwarders answer locally: NOTIMP (opcode 2), FORMERR (two OPT records, pointer in the question),
# BADVERS (EDNS version 1), an EDNS option (cookie), a response sent as a query.
a_test = bytes.fromhex("016104746573740000010001")
opt = bytes.fromhex("0000291000000000000000")
write("dns-query", "opcode-status", bytes.fromhex("2001" "1000" "0001000000000000") + a_test)
write("dns-query", "edns-two-opt", bytes.fromhex("2002" "0100" "0001000000000002") + a_test + opt + opt)
write("dns-query", "edns-version-1", bytes.fromhex("2003" "0100" "0001000000000001") + a_test + bytes.fromhex("0000291000000100000000"))
write("dns-query", "edns-cookie", bytes.fromhex("2004" "0100" "0001000000000001") + a_test + bytes.fromhex("000029100000008000000c000a00080123456789abcdef"))
write("dns-query", "pointer-in-question", bytes.fromhex("2005" "0100" "0001000000000000" "c00c00010001"))
write("dns-query", "underscore-srv", bytes.fromhex("2006" "0100" "0001000000000000") + b"\x05_http\x04_tcp\x01a\x04test\x00" + bytes.fromhex("00210001"))

# Answers with compression pointers pointing into CNAME chains, a CNAME loop, an unrelated address record (must
# not be learned), and a truncated (TC) answer.
header = bytes.fromhex("3001" "8580" "0001" "0003" "00000000")
question = b"\x01a\x04test\x00" + bytes.fromhex("00010001")
cname_loop = (bytes.fromhex("c00c000500010000003c0004") + b"\x01b\xc0\x0e"
              + bytes.fromhex("c02400050001000000" "3c0002") + bytes.fromhex("c00c")
              + bytes.fromhex("c00c00010001000000" "3c0004c6120001"))
write("dns-response", "cname-loop", header + question + cname_loop)
unrelated = (bytes.fromhex("3002" "8580" "0001" "0002" "00000000") + question
             + bytes.fromhex("c00c00010001000000" "3c0004c6120001")
             + b"\x04evil\xc0\x0e" + bytes.fromhex("00010001000000" "3c0004c6120063"))
write("dns-response", "unrelated-address", unrelated)
write("dns-response", "count-beyond-end", bytes.fromhex("3004" "8580" "0001" "0002" "00000000") + question
      + bytes.fromhex("c00c00010001000000" "3c0004c6120001"))
write("dns-response", "truncated-tc", bytes.fromhex("3003" "8780" "0001" "0000" "00000000") + question)

# What the enclave's screen reads besides answer-section A/AAAA (DnsAnswerLearner.RefuseInternal): an HTTPS record
# with ipv4hint and ipv6hint (RFC 9460), an SRV answer with an address record beside it, an A record of class CH, a
# loopback AAAA in its IPv4-mapped form off the chain, and an owner label with a zero byte.
https_question = b"\x01a\x04test\x00" + bytes.fromhex("00410001")
https_data = (bytes.fromhex("0001" "00") + bytes.fromhex("0001" "0003" "026832")
              + bytes.fromhex("0004" "0008" "c6120001" "7f000001") + bytes.fromhex("0006" "0010") + bytes(15) + b"\x01")
write("dns-response", "https-hints", bytes.fromhex("3005" "8180" "0001" "0001" "00000000") + https_question
      + bytes.fromhex("c00c00410001000000" "3c") + struct.pack(">H", len(https_data)) + https_data)
srv_question = b"\x01a\x04test\x00" + bytes.fromhex("00210001")
srv_data = bytes.fromhex("0001" "0001" "01bb") + b"\x03srv\xc0\x0e"
write("dns-response", "srv-with-additional", bytes.fromhex("3006" "8180" "0001" "0001" "0000" "0001") + srv_question
      + bytes.fromhex("c00c00210001000000" "3c") + struct.pack(">H", len(srv_data)) + srv_data
      + bytes.fromhex("c02c00010001000000" "3c00047f000001"))
write("dns-response", "a-class-ch", bytes.fromhex("3007" "8180" "0001" "0002" "00000000") + question
      + bytes.fromhex("c00c00010001000000" "3c0004c6120001") + bytes.fromhex("c00c00010003000000" "3c00087f00000100000000"))
aaaa_question = b"\x01a\x04test\x00" + bytes.fromhex("001c0001")
write("dns-response", "mapped-loopback-off-chain", bytes.fromhex("3008" "8180" "0001" "0002" "00000000") + aaaa_question
      + bytes.fromhex("c00c001c0001000000" "3c0010") + bytes(15) + b"\x01"
      + b"\x05other\xc0\x0e" + bytes.fromhex("001c0001000000" "3c0010") + bytes(10) + bytes.fromhex("ffff7f000001"))
write("dns-response", "zero-byte-owner-label", bytes.fromhex("3009" "8180" "0001" "0001" "00000000") + question
      + bytes.fromhex("0f0000010001000000" "3c00047f000001") + bytes.fromhex("c00c") + bytes.fromhex("00100001000000" "3c000100"))

# --- dns-framing: length-prefixed streams ---------------------------------------------------------------------------
def frame(message):
    return struct.pack(">H", len(message)) + message


q = queries["ATestAQuery"]
r = responses["WwwBTestAResponse"]
write("dns-framing", "one-query", frame(q))
write("dns-framing", "pipelined-queries", frame(q) + frame(queries["ATestAEdnsQuery"]) + frame(queries["MixedCaseAaaaQuery"]))
write("dns-framing", "answer-then-cut", frame(r) + frame(q)[:7])
write("dns-framing", "prefix-only", struct.pack(">H", 300))
write("dns-framing", "empty-frame", frame(q) + b"\x00\x00")
write("dns-framing", "oversize-prefix", b"\xff\xff" + q)
write("dns-framing", "over-512", frame(bytes(600)))

# --- config: real enclave.toml files --------------------------------------------------------------------------------
write("config", "samples-enclave.toml", (repo / "samples/enclave.toml").read_text())
readme = (repo / "README.md").read_text()
for i, block in enumerate(re.findall(r"```toml\n(.*?)```", readme, re.S)):
    write("config", f"readme-{i}.toml", block)
tests = (repo / "tests/Egress.Core.Tests/Configuration/EgressConfigurationTests.cs").read_text()
for name in ("FullFile", "EvervaultFile"):
    block = re.search(name + r' = """\n(.*?)\n\s*""";', tests, re.S).group(1)
    write("config", f"tests-{name}.toml", "\n".join(line[8:] for line in block.split("\n")) + "\n")
write("config", "empty.toml", "")
write("config", "unknown-key.toml", "[egress]\nenabeld = true\n")
write("config", "inline-tables.toml", 'healthcheck = { path = "/health", port = 3000 }\n[[listeners]]\nport = 1\n[egress]\ndestinations = ["a.test", "*.b.test", "10.0.0.0/8", "::1"]\n')


# --- tls-client-hello: ClientHellos captured from OpenSSL 3.0 s_client and curl (kept in git, not rewritten here),
# and variants derived from them: split across records, a post-quantum key share (X25519MLKEM768, group 0x11ec,
# 1216 + 32 bytes; OpenSSL 3.0 here cannot send one), ECH, no SNI, two host names, hostile lengths, not TLS.
def tls_records(handshake, size=16384, version=b"\x03\x01"):
    return b"".join(b"\x16" + version + struct.pack(">H", len(handshake[i:i + size])) + handshake[i:i + size]
                    for i in range(0, len(handshake), size))


def tls_handshake(records):
    data, offset = b"", 0
    while offset + 5 <= len(records):
        length = struct.unpack(">H", records[offset + 3:offset + 5])[0]
        data += records[offset + 5:offset + 5 + length]
        offset += 5 + length
    return data


def tls_extensions(handshake):
    """Splits a ClientHello handshake message into (head, [(type, data)])."""
    body = handshake[4:]
    p = 34
    p += 1 + body[p]
    p += 2 + struct.unpack(">H", body[p:p + 2])[0]
    p += 1 + body[p]
    exts, q = [], p + 2
    while q < len(body):
        kind, length = struct.unpack(">HH", body[q:q + 4])
        exts.append((kind, body[q + 4:q + 4 + length]))
        q += 4 + length
    return body[:p], exts


def tls_client_hello(head, exts):
    block = b"".join(struct.pack(">HH", kind, len(data)) + data for kind, data in exts)
    body = head + struct.pack(">H", len(block)) + block
    return b"\x01" + struct.pack(">I", len(body))[1:] + body


def server_name(name):
    entry = b"\x00" + struct.pack(">H", len(name)) + name
    return struct.pack(">H", len(entry)) + entry


tls_seed = corpus / "tls-client-hello" / "openssl-s_client-www.allowed.test"
if tls_seed.exists():
    hello = tls_handshake(tls_seed.read_bytes())
    head, exts = tls_extensions(hello)
    write("tls-client-hello", "split-records-100", tls_records(hello, 100))
    write("tls-client-hello", "split-records-1", tls_records(hello[:40], 1) + tls_records(hello[40:]))
    pq_share = struct.pack(">HH", 0x11EC, 1216 + 32) + bytes(range(256)) * 4 + bytes(1248 - 1024) + struct.pack(">HH", 0x001D, 32) + bytes(32)
    pq = [(kind, struct.pack(">H", len(pq_share)) + pq_share if kind == 51 else data) for kind, data in exts]
    write("tls-client-hello", "pq-x25519mlkem768-www.allowed.test", tls_records(tls_client_hello(head, pq), 1400))
    write("tls-client-hello", "ech-outer-public.allowed.test",
          tls_records(tls_client_hello(head, [(0, server_name(b"public.allowed.test")) if k == 0 else (k, d) for k, d in exts] + [(0xFE0D, b"\x00\x00\x01\x00\x01\x07" + bytes(40))])))
    write("tls-client-hello", "no-sni", tls_records(tls_client_hello(head, [(k, d) for k, d in exts if k != 0])))
    write("tls-client-hello", "two-host-names", tls_records(tls_client_hello(head, [(0, struct.pack(">H", 2 * 14) + (b"\x00\x00\x0b" + b"a.allowed.t\x00")[:14] * 2) if k == 0 else (k, d) for k, d in exts])))
    write("tls-client-hello", "duplicate-extension", tls_records(tls_client_hello(head, exts + [exts[-1]])))
    write("tls-client-hello", "hostile-handshake-length", b"\x16\x03\x01\x00\x04\x01\xff\xff\xff")
    write("tls-client-hello", "hostile-record-length", b"\x16\x03\x01\xff\xff\x01\x00\x01\x00")
    write("tls-client-hello", "alert-between-records", tls_records(hello[:50]) + b"\x15\x03\x03\x00\x02\x02\x28" + tls_records(hello[50:]))
write("tls-client-hello", "not-tls-http", b"GET / HTTP/1.1\r\nHost: www.allowed.test\r\n\r\n")
write("tls-client-hello", "not-tls-ssh", b"SSH-2.0-OpenSSH_9.6\r\n")


# --- learned-addresses: egress-enclave's learned-addresses file (src/Egress.Core/Policy/LearnedAddressesFile.cs) -----
# The target's clock is 2026-12-05T00:00Z (1796428800000 ms); its policy allows api.example.com:443, *.allowed.test
# and 198.18.0.0/15:80.
head = "egress-learned-addresses 1\n"
write("learned-addresses", "golden", head + "1796429100000 198.18.0.10 api.example.com\n1796429100000 2001:db8::10 api.example.com\n")
write("learned-addresses", "every-skip", head + "1796429100000 198.51.100.7 www.allowed.test\n1796400000000 198.51.100.8 api.example.com\n"
      "1796429100000 198.51.100.9 evil.example\n1796429100000 10.0.0.1 api.example.com\n0123 1.2.3.4 api.example.com\n"
      "1796429100000 127.1 api.example.com\n1796429100000 fe80::1%2 api.example.com\n")
write("learned-addresses", "in-grace", head + "1796428770000 198.51.100.7 api.example.com\n")
write("learned-addresses", "no-final-newline", head + "1796429100000 198.51.100.7 api.example.com")
write("learned-addresses", "overlong-line", head + "1796429100000 198.51.100.7 " + "a" * 400 + "\n1796429100000 198.51.100.8 x.allowed.test\n")
write("learned-addresses", "other-version", "egress-learned-addresses 2\n1796429100000 198.51.100.7 api.example.com\n")
write("learned-addresses", "empty", b"")

