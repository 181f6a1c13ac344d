#!/usr/bin/env bash
# The budgets table of `bash infra/bench.sh all`, from its results file ("key value" lines,
# appended by each section), as Markdown: every budget with its measured value and a
# verdict, then one row per function. A value that was not measured says why.
#
#   bash infra/bench-table.sh target/bench/results-<time>.txt
#
# The floor (the least any Rust Lambda can be) is read from coldstart.coldstart-floor.* lines, which
# lambda_coldstart writes for the floor binary, coldstart-floor (tests/floor):
# each function's init and RSS then print as a ratio to it.
set -euo pipefail
[ $# -eq 1 ] && [ -f "$1" ] || { echo "usage: bash infra/bench-table.sh RESULTS" >&2; exit 2; }

awk '
function has(k) { return (k in v) && v[k] !~ /^UNMEASURED/ }
function get(k) { return v[k] }
function why(k, section,    reason) {
    if ((k in v) && (v[k] ~ /^UNMEASURED/ || k ~ /\.unmeasured$/)) { reason = v[k]; sub(/^UNMEASURED: */, "", reason); return "not measured: " reason }
    if (("section." section ".failed") in v) return "not measured: the " section " section failed (see its output)"
    return "not measured: the " section " section did not run"
}
function mib(bytes) { return sprintf("%.2f MiB", bytes / 1048576) }
function mb(bytes) { return sprintf("%.2f MB", bytes / 1000000) }
function verdict(ok) { return ok ? "pass" : "**FAIL**" }
function row(what, measured, goal, result) { printf "| %s | %s | %s | %s |\n", what, measured, goal, result }
function worst(figure,    f, best, name) {
    best = ""; worst_name = ""
    for (f in fn) if (has("coldstart." f "." figure) && (best == "" || v["coldstart." f "." figure] + 0 > best + 0)) {
        best = v["coldstart." f "." figure]; worst_name = f
    }
    return best
}
function ratio(a, b) { return (b + 0 > 0) ? sprintf("%.2f×", a / b) : "?" }
{
    key = $1; $1 = ""; sub(/^ /, ""); gsub(/"/, ""); v[key] = $0
    if (key ~ /^coldstart\./ ) { split(key, p, "."); if (p[2] != "coldstart-floor") fn[p[2]] = 1 }
    if (key ~ /^size\./ ) { split(key, p, "."); fn[p[2]] = 1 }
}
END {
    n = 0; for (f in fn) names[++n] = f
    for (i = 2; i <= n; i++) for (j = i; j > 1 && names[j] < names[j - 1]; j--) { t = names[j]; names[j] = names[j - 1]; names[j - 1] = t }
    floor = has("coldstart.coldstart-floor.init_ms_p50")
    warm = v["bench.warm"] + 0

    print "| budget | measured | goal | verdict |"
    print "|---|---|---|---|"
    w = worst("init_ms_p50")
    if (w != "") row("Lambda init (cold start), worst function, median of " v["bench.runs"] " runs", sprintf("%.2f ms (%s)", w, worst_name), "≤ 20 ms", verdict(w + 0 <= 20))
    else row("Lambda init (cold start)", why("", "coldstarts"), "≤ 20 ms", "—")
    if (floor) {
        worst_init = 0; worst_rss = 0
        for (f in fn) {
            # The paired ratio (each run over the floor's start just before it) where
            # lambda_coldstart --floor measured it, else the ratio of the medians.
            r = has("coldstart." f ".init_floor_ratio_p50") ? v["coldstart." f ".init_floor_ratio_p50"] + 0 : (has("coldstart." f ".init_ms_p50") ? v["coldstart." f ".init_ms_p50"] / v["coldstart.coldstart-floor.init_ms_p50"] : 0)
            if (r > worst_init) { worst_init = r; wi = f }
            if (has("coldstart." f ".rss_mib_p50") && v["coldstart." f ".rss_mib_p50"] / v["coldstart.coldstart-floor.rss_mib_p50"] > worst_rss) { worst_rss = v["coldstart." f ".rss_mib_p50"] / v["coldstart.coldstart-floor.rss_mib_p50"]; wr = f }
        }
        row("init ÷ the floor (hello-world lambda_http, same profile, same run; median of paired runs), worst", sprintf("%.2f× (%s; floor %.2f ms)", worst_init, wi, v["coldstart.coldstart-floor.init_ms_p50"]), "≤ 1.5×", verdict(worst_init <= 1.5))
        row("cold RSS ÷ the floor, worst", sprintf("%.2f× (%s; floor %.1f MiB)", worst_rss, wr, v["coldstart.coldstart-floor.rss_mib_p50"]), "≤ 1.5×", verdict(worst_rss <= 1.5))
    } else {
        row("init and RSS ÷ the floor (hello-world lambda_http)", why("coldstart.coldstart-floor.unmeasured", "coldstarts"), "≤ 1.5×", "—")
    }
    w = worst("warm_rss_mib")
    missing = ""
    for (i = 1; i <= n; i++) if (!has("coldstart." names[i] ".warm_rss_mib")) missing = missing (missing == "" ? "" : ", ") names[i]
    if (missing != "") missing = "; not measured for " missing " (its warm run failed, see its output)"
    if (w != "") row("peak RSS after " warm " warm invocations (the worker: " warm " records in full batches of 10), worst", sprintf("%.1f MiB (%s)%s", w, worst_name, missing), "≤ 30 MB", verdict(w * 1048576 <= 30000000) (missing != "" ? ", incomplete" : ""))
    else row("peak RSS after warm invocations", why("", "coldstarts"), "≤ 30 MB", "—")
    big = 0; bigname = ""; arm = 0; armname = ""
    for (f in fn) {
        if (has("size." f ".x86_64") && v["size." f ".x86_64"] + 0 > big) { big = v["size." f ".x86_64"] + 0; bigname = f }
        if (has("size." f ".arm64") && v["size." f ".arm64"] + 0 > arm) { arm = v["size." f ".arm64"] + 0; armname = f }
    }
    if (big) row("release binary x86_64 (stripped), largest", sprintf("%s = %s (%s; zip %s)", mb(big), mib(big), bigname, mib(v["size." bigname ".x86_64_zip"])), "≤ 8 MB (8 000 000 bytes, as infra/deploy-build.sh)", verdict(big <= 8000000))
    else row("release binary x86_64", why("", "sizes"), "≤ 8 MB", "—")
    if (arm) row("release binary arm64, largest built", sprintf("%s = %s (%s; zip %s)", mb(arm), mib(arm), armname, mib(v["size." armname ".arm64_zip"])), "≤ 8 MB", verdict(arm <= 8000000))
    else row("release binary arm64", why("size." names[1] ".arm64", "arm64"), "≤ 8 MB", "—")
    split("webhook-meta webhook-mercadolivre", hs, " ")
    for (i = 1; i <= 2; i++) {
        k = "ingest.handler." hs[i] "."
        if (has(k "p99_us")) row(hs[i] " ingest handler, excluding the SQS call", sprintf("p50 %s µs, p99 %s µs", v[k "p50_us"], v[k "p99_us"]), "p99 ≤ 1 ms", verdict((v[k "p99_us"] + 0) <= 1000))
        else row(hs[i] " ingest handler", why("", "ingest"), "p99 ≤ 1 ms", "—")
    }
    if (has("ingest.ratio")) {
        row("local runner vs Node/BullMQ peer, webhook ingest, wrk " v["ingest.wrk"] ", median of " v["ingest.rounds"] " rounds", sprintf("ours %.0f/s (p99 %s ms), peer %.0f/s (p99 %s ms): **%s×**", v["ingest.ours.rps"], v["ingest.ours.p99_ms"], v["ingest.peer.rps"], v["ingest.peer.p99_ms"], v["ingest.ratio"]), "≥ 5× the peer", verdict((v["ingest.ratio"] + 0) >= 5))
        row("webhooks lost by the runner (every 200 on the queue)", (v["ingest.lost"] + 0) == 0 ? "none" : "SOME (see the output)", "none, durable", verdict((v["ingest.lost"] + 0) == 0))
    } else row("local runner vs Node/BullMQ peer", why("", "ingest"), "≥ 5× the peer", "—")
    if (has("sse.latency_p99_ms")) {
        row("SSE: webhook accepted → event on an open stream", sprintf("p50 %s ms, p99 %s ms", v["sse.latency_p50_ms"], v["sse.latency_p99_ms"]), "p99 ≤ 50 ms", verdict((v["sse.latency_p99_ms"] + 0) <= 50 && (v["sse.missing"] + 0) == 0))
        row("SSE: streams held by the local runner, its RSS holding them", sprintf("%s of %s, %s MiB", v["sse.streams_open"], v["sse.streams_wanted"], v["sse.rss_mib"]), "≥ 1000", verdict((v["sse.streams_open"] + 0) >= 1000))
    } else row("SSE: streams and accepted → event", why("", "sse"), "≥ 1000 streams, p99 ≤ 50 ms", "—")
    if (has("reads.authenticate.max")) row("storage reads per authenticated request (counted)", sprintf("%s (max; a whole GET /v1/me: %s)", v["reads.authenticate.max"], v["reads.me.median"]), "1", verdict((v["reads.authenticate.max"] + 0) == 1))
    else row("storage reads per authenticated request", why("", "pipeline"), "1", "—")
    if (has("limiter.check.round_trips")) {
        row("Upstash round trips per limit check; p50 / p99", sprintf("%s; %s / %s µs", v["limiter.check.round_trips"], v["limiter.check.p50_us"], v["limiter.check.p99_us"]), "1", verdict((v["limiter.check.round_trips"] + 0) == 1))
        row("Upstash round trips per check cached as blocked", v["limiter.cached.round_trips"], "0", verdict((v["limiter.cached.round_trips"] + 0) == 0))
    } else row("Upstash round trips per limit check", why("", "coldstarts"), "1; 0 cached", "—")
    split("embedded moto", bs, " ")
    label["embedded"] = "worker throughput, embedded queue, the sandbox provider"
    label["moto"] = "worker throughput, SQS and DynamoDB on moto"
    for (i = 1; i <= 2; i++) {
        k = "worker." bs[i] "."
        if (has(k "records_per_s")) row(label[bs[i]], sprintf("%s records/s (WhatsApp %s, Mercado Livre questions %s)", v[k "records_per_s"], v[k "meta.records_per_s"], v[k "mercadolivre.records_per_s"]), "—", "—")
        else row(label[bs[i]], why("", "pipeline"), "—", "—")
    }
    if (has("cost.per_million.max")) {
        wmax = 0
        split("meta mercadolivre", ss, " ")
        for (i = 1; i <= 2; i++) if (v["ops.moto." ss[i] ".dynamodb_wru"] + 0 > wmax) { wmax = v["ops.moto." ss[i] ".dynamodb_wru"] + 0; wsrc = ss[i] }
        row("cost per 1 million webhooks on AWS (list prices of " v["cost.prices_date"] "), costlier source", sprintf("$%s (%s; WhatsApp $%s, Mercado Livre $%s)", v["cost.per_million.max"], v["cost.per_million.max_source"], v["cost.meta.total"], v["cost.mercadolivre.total"]), "≤ $3.00", verdict((v["cost.per_million.max"] + 0) <= 3))
        row("DynamoDB write units per webhook, costlier source", sprintf("%.2f (%s)", wmax, wsrc), "≤ 4", verdict(wmax <= 4))
    } else row("cost per 1 million webhooks", why("cost.unmeasured", "pipeline"), "≤ $3.00", "—")

    print ""
    printf "| function | init p50 | first invocation p50 | cold RSS p50 | RSS after %d warm | warm p50 / p99 | x86_64 binary (zip) | arm64 binary (zip) |\n", warm
    print "|---|---|---|---|---|---|---|---|"
    for (i = 1; i <= n; i++) {
        f = names[i]; c = "coldstart." f "."
        init = has(c "init_ms_p50") ? sprintf("%.2f ms", v[c "init_ms_p50"]) (floor ? " (" ratio(v[c "init_ms_p50"], v["coldstart.coldstart-floor.init_ms_p50"]) ")" : "") : "not measured"
        first = has(c "first_ms_p50") ? sprintf("%.2f ms", v[c "first_ms_p50"]) : "—"
        cold = has(c "rss_mib_p50") ? v[c "rss_mib_p50"] " MiB" (floor ? " (" ratio(v[c "rss_mib_p50"], v["coldstart.coldstart-floor.rss_mib_p50"]) ")" : "") : "—"
        hot = has(c "warm_rss_mib") ? v[c "warm_rss_mib"] " MiB" : "—"
        if (has(c "warm_invocations") && v[c "warm_invocations"] != warm) hot = hot " (" v[c "warm_invocations"] " batches of 10)"
        lat = has(c "warm_ms_p50") ? sprintf("%.2f / %.2f ms", v[c "warm_ms_p50"], v[c "warm_ms_p99"]) : "—"
        x86 = has("size." f ".x86_64") ? mib(v["size." f ".x86_64"]) " (" mib(v["size." f ".x86_64_zip"]) ")" : "not built"
        a64 = has("size." f ".arm64") ? mib(v["size." f ".arm64"]) " (" mib(v["size." f ".arm64_zip"]) ")" : "not built"
        if (has(c "failed_runs") && v[c "failed_runs"] > 0) init = init " (" v[c "failed_runs"] " runs failed)"
        printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", f, init, first, cold, hot, lat, x86, a64
    }
    if (floor) printf "| *floor* (hello-world lambda_http) | %.2f ms | — | %s MiB | %s | — | %s | — |\n", v["coldstart.coldstart-floor.init_ms_p50"], v["coldstart.coldstart-floor.rss_mib_p50"], has("coldstart.coldstart-floor.warm_rss_mib") ? v["coldstart.coldstart-floor.warm_rss_mib"] " MiB" : "—", has("coldstart.coldstart-floor.size_bytes") ? mib(v["coldstart.coldstart-floor.size_bytes"]) : "—"

    if (has("cost.per_million.max")) {
        print ""
        print "| per webhook (moto run, counted) | WhatsApp (webhook-meta) | Mercado Livre question |"
        print "|---|---|---|"
        split("apigw_requests lambda_invocations gb_s sqs_requests dynamodb_rru dynamodb_wru upstash_commands", ks, " ")
        for (i = 1; i <= 7; i++) printf "| %s | %s | %s |\n", ks[i], v["ops.moto.meta." ks[i]], v["ops.moto.mercadolivre." ks[i]]
        print ""
        print "| cost of 1 million webhooks (USD) | WhatsApp | Mercado Livre question |"
        print "|---|---|---|"
        split("apigw lambda_requests lambda_gb_s sqs dynamodb_rru dynamodb_wru upstash total", cs, " ")
        for (i = 1; i <= 8; i++) printf "| %s | %s | %s |\n", cs[i], v["cost.meta." cs[i]], v["cost.mercadolivre." cs[i]]
    }
    print ""
    printf "Measured %s, commit %s, `%s`; %s cores (%s), %s GiB; load average (1/5/15 min) at the start %s, at the end %s.\n", v["bench.date"], v["bench.commit"], v["bench.command"], v["machine.cores"], v["machine.cpu"], v["machine.memory_gib"], v["machine.load_start"], v["machine.load_end"]
    if (has("ingest.other_cores_max")) printf "Ingest rounds: CPU used by others during the measured runs at most %s cores.\n", v["ingest.other_cores_max"]
}' "$1"
