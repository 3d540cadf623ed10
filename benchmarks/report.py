#!/usr/bin/env python3
"""Turns the raw results of benchmarks/run.sh into the ratio table (stdout) and, with --docs, the results section of
docs/benchmarks.md (between the <!-- results:begin --> and <!-- results:end --> markers; the rest is left alone).

Results file: one 'key value' line per sample; a key repeated once per repeat. Figures are medians of the repeats."""
import argparse
import csv
import glob
import os
import statistics
import sys

PATHS = ["egress", "haproxy", "socat", "direct"]
PATH_NAMES = {"egress": "Egress", "haproxy": "HAProxy 2-hop", "socat": "socat 2-hop", "direct": "direct (no proxy)"}
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"

# Micro-benchmarks on a per-connection or per-query path; the target is 0 bytes allocated per operation.
HOT_PATHS = {
    "EgressPolicy.CheckAddress static hit",
    "EgressPolicy.CheckAddress learned hit",
    "EgressPolicy.CheckAddress miss",
    "AllowlistCache.Lookup hit",
    "AllowlistCache.Lookup miss",
    "DnsMessage.TryReadQuestionName",
    "TunnelCodec.WriteRequest (no hint)",
    "TunnelCodec.WriteRequest (host hint)",
    "TunnelCodec.TryReadRequest (no hint)",
    "TunnelCodec.WriteResponse (Ok)",
    "TunnelCodec.TryReadResponse (Ok)",
}


def load(path):
    samples = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2:
                try:
                    samples.setdefault(parts[0], []).append(float(parts[1]))
                except ValueError:
                    samples.setdefault(parts[0], []).append(parts[1])
    return samples


def median(samples, key):
    values = [v for v in samples.get(key, []) if isinstance(v, float)]
    return statistics.median(values) if values else None


def repeat_spread(samples, key, peer_key):
    """' (repeats a–b)': the lowest and highest Egress / peer ratio of single repeats. The paths take turns within a
    repeat, so a repeat's ratio is taken under one load; the spread shows how far one run can move it. Empty when a
    repeat is missing (a failed sample) or there is only one."""
    ours = [v for v in samples.get(key, []) if isinstance(v, float)]
    theirs = [v for v in samples.get(peer_key, []) if isinstance(v, float)]
    if len(ours) < 2 or len(ours) != len(theirs) or 0 in theirs:
        return ""
    ratios = [a / b for a, b in zip(ours, theirs)]
    return f" (repeats {min(ratios):.2f}x–{max(ratios):.2f}x)"


def worst(samples, key):
    values = [v for v in samples.get(key, []) if isinstance(v, float)]
    return max(values) if values else None


def load_machine(path):
    info = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            key, _, value = line.rstrip("\n").partition(" ")
            info[key] = value
    return info


def to_ns(text):
    text = text.replace(",", "").strip()
    if not text or text in ("NA", "-"):
        return None
    number, _, unit = text.partition(" ")
    scale = {"ns": 1, "us": 1e3, "μs": 1e3, "ms": 1e6, "s": 1e9}.get(unit)
    return float(number) * scale if scale else None


def to_bytes(text):
    text = text.replace(",", "").strip()
    if text in ("-", ""):
        return 0.0
    number, _, unit = text.partition(" ")
    return float(number) * {"B": 1, "KB": 1024, "MB": 1024 * 1024}.get(unit, 1)


def load_bdn(folder):
    rows = []
    for path in sorted(glob.glob(os.path.join(folder, "*-report.csv"))):
        with open(path, encoding="utf-8") as f:
            for row in csv.DictReader(f):
                rows.append((row["Method"].strip("'"), to_ns(row.get("Mean", "")), to_bytes(row.get("Allocated", "-"))))
    return rows


def fmt(value, digits=2):
    if value is None:
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.{digits}f}"


def ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


def build(samples, machine, bdn):
    m = lambda key: median(samples, key)  # noqa: E731
    figures = []  # (metric, unit, higher_is_better, {path: value})
    figures.append(("Bulk throughput (iperf3)", "Gbit/s", True, {p: m(f"throughput_gbps.{p}") for p in PATHS}))
    figures.append(("RTT p50, 1-byte ping-pong", "µs", False, {p: m(f"rtt_p50_us.{p}") for p in PATHS}))
    figures.append(("RTT p99, 1-byte ping-pong", "µs", False, {p: m(f"rtt_p99_us.{p}") for p in PATHS}))
    figures.append(("Connections/s (connect, 32 B echo, close)", "1/s", True, {p: m(f"conn_per_s.{p}") for p in PATHS}))
    for hop in (1, 2):
        figures.append((f"RSS per idle connection, hop {hop}", "KiB", False,
                        {p: none_div(m(f"mem_bytes_per_conn.{p}.hop{hop}"), 1024) for p in PATHS}))
    figures.append(("CPU during iperf3, hop 1", "% of a core", False, {p: m(f"cpu_pct.{p}.hop1") for p in PATHS}))
    figures.append(("CPU during iperf3, hop 2", "% of a core", False, {p: m(f"cpu_pct.{p}.hop2") for p in PATHS}))
    for hop in (1, 2):
        figures.append((f"CPU per connection (connection rate), hop {hop}", "µs", False,
                        {p: cpu_per_op(samples, f"cpu_cr_pct.{p}.hop{hop}", f"conn_per_s.{p}") for p in PATHS}))
    http = {p: m(f"http_req_per_s.{p}") for p in PATHS}
    if any(v is not None for v in http.values()):
        figures.append(("HTTP requests/s (wrk, 16 connections, Connection: close)", "1/s", True, http))
        for hop in (1, 2):
            figures.append((f"CPU per HTTP request, hop {hop}", "µs", False,
                            {p: cpu_per_op(samples, f"cpu_http_pct.{p}.hop{hop}", f"http_req_per_s.{p}") for p in PATHS}))
    dns_skipped = "dns_skipped" in samples
    dns = [
        ("DNS queries/s (dnsperf, 100 outstanding)", "1/s", True, {p: m(f"dns_qps.{p}") for p in ("egress", "dnsmasq")}),
        ("DNS queries lost (worst repeat)", "", False, {p: worst(samples, f"dns_lost.{p}") for p in ("egress", "dnsmasq")}),
        ("DNS p50 at 1,000 qps", "µs", False, {p: m(f"dns_p50_us.{p}") for p in ("egress", "dnsmasq")}),
        ("DNS p99 at 1,000 qps", "µs", False, {p: m(f"dns_p99_us.{p}") for p in ("egress", "dnsmasq")}),
    ]

    lines = []
    lines.append("| Metric | Egress | HAProxy 2-hop | socat 2-hop | direct | Egress / HAProxy | Egress / socat | Egress / direct |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, unit, _, values in figures:
        e = values["egress"]
        cells = [fmt(values[p]) for p in PATHS]
        ratios = [fmt(ratio(e, values[p])) + "x" if ratio(e, values[p]) is not None else "–" for p in ("haproxy", "socat", "direct")]
        lines.append(f"| {name} ({unit}) | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    lines.append("")
    lines.append("| DNS metric | Egress (2 hops, Unix tunnel) | dnsmasq pair | Egress / dnsmasq |")
    lines.append("|---|---:|---:|---:|")
    for name, unit, _, values in dns:
        e = "skipped" if dns_skipped else fmt(values["egress"])
        r = ratio(values["egress"], values["dnsmasq"])
        lines.append(f"| {name}{' (' + unit + ')' if unit else ''} | {e} | {fmt(values['dnsmasq'])} | "
                     f"{fmt(r) + 'x' if r is not None else '–'} |")
    table = "\n".join(lines)

    # Targets: (target, figure, met, by how much)
    targets = []
    tp = figures[0][3]
    for peer, goal in (("haproxy", 1.6), ("socat", 2.0), ("direct", 0.5)):
        targets.append(at_least(f"Throughput ≥ {goal}x {PATH_NAMES[peer]}", ratio(tp["egress"], tp[peer]), goal,
                                repeat_spread(samples, "throughput_gbps.egress", f"throughput_gbps.{peer}")))
    for i, label in ((1, "p50"), (2, "p99")):
        rtt = figures[i][3]
        targets.append(at_most(f"RTT {label} no worse than socat (≤ 1.0x)", ratio(rtt["egress"], rtt["socat"]), 1.0,
                               spread=repeat_spread(samples, f"rtt_{label}_us.egress", f"rtt_{label}_us.socat")))
    cr = figures[3][3]
    targets.append(at_least("Connection rate ≥ 1.0x HAProxy 2-hop", ratio(cr["egress"], cr["haproxy"]), 1.0,
                            repeat_spread(samples, "conn_per_s.egress", "conn_per_s.haproxy")))
    http = {p: m(f"http_req_per_s.{p}") for p in PATHS}
    if http["egress"] is not None or http["haproxy"] is not None:
        t = at_least("HTTP connection rate (wrk, Connection: close) ≥ 1.0x HAProxy 2-hop", ratio(http["egress"], http["haproxy"]),
                     1.0, repeat_spread(samples, "http_req_per_s.egress", "http_req_per_s.haproxy"))
        errors = worst(samples, "http_errors.egress")
        if errors not in (None, 0):
            t = (t[0], t[1] + f", {fmt(errors, 0)} errors", "not met", t[3])
        targets.append(t)
    conns = m("mem_conns.egress")
    for hop, host in ((1, "egress-enclave"), (2, "egress-host")):
        value = figures[3 + hop][3]["egress"]
        targets.append(at_most(f"≤ 16 KiB RSS per idle connection, {host} ({fmt(conns, 0)} connections)", value, 16.0,
                               unit=" KiB"))
        targets.append(at_most(f"≤ 4 KiB RSS per idle connection, {host} ({fmt(conns, 0)} connections; issue 15)", value,
                               4.0, unit=" KiB"))
    if dns_skipped:
        targets.append(("DNS ≥ 1.0x dnsmasq pair, 0 lost", "skipped (no DNS forwarder answering)", "not measured", ""))
    else:
        qps = dns[0][3]
        lost = dns[1][3]["egress"]
        t = at_least("DNS ≥ 1.0x dnsmasq pair, 0 lost", ratio(qps["egress"], qps["dnsmasq"]), 1.0,
                     repeat_spread(samples, "dns_qps.egress", "dns_qps.dnsmasq"))
        if lost not in (None, 0):
            t = (t[0], t[1] + f", {fmt(lost, 0)} lost", "not met", t[3])
        targets.append(t)
    hot = [(name, mean, alloc) for name, mean, alloc in bdn if name in HOT_PATHS]
    allocating = [f"{name} ({alloc:.0f} B)" for name, _, alloc in hot if alloc > 0]
    if not hot:
        targets.append(("0 allocations on hot paths", "no micro-benchmark results", "not measured", ""))
    elif allocating:
        targets.append(("0 allocations on hot paths", f"{len(hot) - len(allocating)} of {len(hot)} allocate nothing",
                        "not met", "allocating: " + ", ".join(allocating)))
    else:
        targets.append(("0 allocations on hot paths", f"all {len(hot)} allocate 0 B", "met", ""))

    target_lines = ["| Target | Measured | Met? | Margin |", "|---|---|---|---|"]
    target_lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in targets]
    target_table = "\n".join(target_lines)

    micro_lines = ["| Operation | Time per op | Allocated per op | Hot path |", "|---|---:|---:|---|"]
    for name, mean, alloc in bdn:
        micro_lines.append(f"| {name} | {fmt(mean)} ns | {alloc:.0f} B | {'yes' if name in HOT_PATHS else 'no'} |")
    micro_table = "\n".join(micro_lines)
    return table, target_table, micro_table, targets, build_sni(samples)


def build_sni(samples):
    """The sni section's table: the server-name check on ("require") and off through a learned address, same run;
    empty when the section did not run."""
    rows = [("TLS connections/s (full handshake with SNI, GET, close; 4 loops)", "sni_tls_conn_per_s"),
            ("Bulk throughput, iperf3 to the name (Gbit/s)", "sni_throughput_gbps"),
            ("Idle connection, no client byte yet: egress-enclave RSS per connection (bytes)", "sni_mem_bytes_per_conn_hop1"),
            ("Idle connection, no client byte yet: egress-host RSS per connection (bytes)", "sni_mem_bytes_per_conn_hop2")]
    if not any(f"{key}.require" in samples or f"{key}.off" in samples for _, key in rows):
        return ""
    lines = ["| Metric (Egress, learned address) | require | off | require / off |", "|---|---:|---:|---:|"]
    for name, key in rows:
        on, off = median(samples, f"{key}.require"), median(samples, f"{key}.off")
        r = ratio(on, off)
        lines.append(f"| {name} | {fmt(on)} | {fmt(off)} | "
                     f"{fmt(r) + 'x' if r is not None else '–'}{repeat_spread(samples, f'{key}.require', f'{key}.off')} |")
    failed = [worst(samples, f"sni_tls_failed.{mode}") for mode in ("require", "off")]
    lines.append(f"| TLS connections failed (worst repeat) | {fmt(failed[0], 0)} | {fmt(failed[1], 0)} | – |")
    return "\n".join(lines)


def cpu_per_op(samples, cpu_key, rate_key):
    """CPU time per operation in µs: the median over repeats of (% of a core / operations per second), each repeat's
    CPU and rate taken over the same test."""
    cpu = [v for v in samples.get(cpu_key, []) if isinstance(v, float)]
    rate = [v for v in samples.get(rate_key, []) if isinstance(v, float)]
    if not cpu or len(cpu) != len(rate) or 0 in rate:
        return None
    return statistics.median(c / 100 / r * 1e6 for c, r in zip(cpu, rate))


def none_div(value, by):
    return value / by if value is not None else None


def at_least(label, value, goal, spread=""):
    if value is None:
        return (label, "n/a", "not measured", "")
    met = value >= goal
    return (label, f"{value:.2f}x{spread}", "met" if met else "not met", f"{(value / goal - 1) * 100:+.0f}% vs target")


def at_most(label, value, goal, unit="x", spread=""):
    if value is None:
        return (label, "n/a", "not measured", "")
    met = value <= goal
    return (label, f"{value:.2f}{unit}{spread}", "met" if met else "not met", f"{(1 - value / goal) * 100:+.0f}% headroom" if met
            else f"{(value / goal - 1) * 100:.0f}% over")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--results", required=True)
    parser.add_argument("--machine", required=True)
    parser.add_argument("--bdn", required=True)
    parser.add_argument("--docs")
    args = parser.parse_args()
    samples = load(args.results)
    machine = load_machine(args.machine)
    bdn = load_bdn(args.bdn) if os.path.isdir(args.bdn) else []
    table, target_table, micro_table, _, sni_table = build(samples, machine, bdn)

    print()
    print(f"Egress benchmarks ({machine.get('mode')} run, {machine.get('date')}, {machine.get('nproc')} CPUs, "
          f"{machine.get('cpu')}, kernel {machine.get('kernel')}; medians of {machine.get('repeats')} repeat(s))")
    print()
    print(table)
    print()
    print(target_table)
    print()
    print(micro_table)
    print()
    if sni_table:
        print("TLS server-name check (egress.tls_server_name), on and off in the same run:")
        print()
        print(sni_table)
        print()

    if args.docs:
        section = "\n".join([
            BEGIN,
            "## Results",
            "",
            f"Generated by `benchmarks/run.sh` on {machine.get('date')}. Medians of {machine.get('repeats')} repeats "
            f"({machine.get('durations')}).",
            "",
            f"Machine: {machine.get('nproc')} CPUs ({machine.get('cpu')}), Linux {machine.get('kernel')}, "
            f".NET SDK {machine.get('dotnet')}; peers: HAProxy {machine.get('haproxy')}, socat {machine.get('socat')}, "
            f"dnsmasq {machine.get('dnsmasq')}; load: iperf3 {machine.get('iperf3')}, dnsperf {machine.get('dnsperf')}"
            + (f", wrk {machine.get('wrk')} against nginx {machine.get('nginx')}" if "wrk" in machine else "") + ".",
            "",
            "### Ratios",
            "",
            table,
            "",
            "### Targets",
            "",
            "Measured: the ratio of the medians; in brackets, the lowest and highest ratio of a single repeat.",
            "",
            target_table,
            "",
        ] + ([
            "### The TLS server-name check, on (`require`) and off, same run",
            "",
            "Both hosts restarted on a file that allows only `bench.sni.test` (its address learned from the DNS answer "
            "the client got through Egress), once per setting and repeat, the settings taking turns; nginx in the world "
            "namespace. Ratio in brackets: the lowest and highest of a single repeat.",
            "",
            sni_table,
            "",
        ] if sni_table else []) + [
            "### Micro-benchmarks (BenchmarkDotNet, in-process, `[MemoryDiagnoser]`)",
            "",
            micro_table,
            END,
        ])
        text = open(args.docs, encoding="utf-8").read() if os.path.exists(args.docs) else ""
        if BEGIN in text and END in text:
            text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END):]
        else:
            text = text.rstrip("\n") + "\n\n" + section + "\n"
        with open(args.docs, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"wrote {args.docs}", file=sys.stderr)


if __name__ == "__main__":
    main()
