vcl 4.1;
# townhall behind Varnish (7.1, as Debian 12 ships it): the edge for a live audience. Run it with
#     varnishd -a :80 -f /etc/varnish/townhall.vcl -s malloc,1g -p pipe_timeout=120 \
#              -p backend_idle_timeout=4 -p thread_pool_max=N   # per pool (2 pools): N >= the listeners at once
#              -p thread_queue_limit=M   # connections queued for a thread before new ones are closed: a join storm's size
# (or point Debian's varnish.service at this file) and adjust the backends below. A client
# connection in use holds a worker thread, and a low-latency listener keeps two busy (1,972 threads
# for 1,000 listeners, measured); a request parked on a fill in progress holds none.
#
# Why Varnish for listeners: a low-latency player asks for things that do not exist yet (the next
# part, a playlist that lists it) and the whole audience asks at the same moment. Varnish parks
# every request for an object already being fetched on that fetch (request coalescing, no
# polling) and streams the answer to all of them as it arrives from the origin. nginx's
# proxy_cache_lock makes the same waiters re-check every 500 ms, so behind nginx a listener runs
# up to half a second later than one served directly (deploy/nginx/townhall.conf; bench/report.md
# compares the two).
#
# What it caches, as the origin's Cache-Control says (src/townhall/delivery/origin.py):
#  - Parts, segments, the init section: immutable (the URL carries a stream id).
#  - Blocking playlist reloads (?_HLS_msn=&_HLS_part=): the answer holds the part asked for and is
#    right for everyone asking the same question (max-age=30); an old question is answered with the
#    live playlist and marked like it (s-maxage=1).
#  - The plain live playlist: fresh for 1 s (s-maxage=1) and never served past that (no grace): a
#    stale live playlist sends players back in time. When it expires, the next asker fetches it
#    and everyone arriving meanwhile waits for that one fetch.
#  - The listener snapshot and a Space as an anonymous listener's page first asks for it
#    (/api/spaces/{id}): fresh for 1 s, never served past that.
#  - An error the origin gives no lifetime (a 404 for a part not produced yet, a 503 with
#    Retry-After: 1): one second, so an audience retrying together costs one origin request.
#  - Nothing else: every other request (pages, the rest of the API, anything but GET and HEAD)
#    passes through, and the stage's WebSocket is piped.
# Identity: a request with an Authorization header is never answered from nor stored in the cache.
# The session cookie is the identity on the API: a Space lookup that carries any cookie passes
# through too. On the listener media path and the snapshot the origin never reads an identity (the
# answer is the same for everyone), so the cookie a signed-in listener's browser sends along is
# dropped there rather than costing the origin a request per listener.
#
# Every request reaches the origin with the browser's Host and X-Forwarded-For (Varnish appends
# the client's address itself), X-Forwarded-Proto and X-Forwarded-Host, each set here once. The
# origin believes X-Forwarded-* only from the addresses in TOWNHALL_TRUSTED_PROXIES: set it to the
# address this edge connects from (127.0.0.1 when both run on one box).

import directors;
import proxy;
import std;

# Is a node alive? A node that answers no health check three times running (1.5 s) is left out of
# the rotation; one answer brings it back. Before that, a request that finds a node gone is retried
# on the next one (vcl_backend_error), so a dead node costs no listener an error. Lenient on
# purpose: an overloaded node may refuse a health check with 503 now and then, and leaving every
# node out would turn the whole audience away.
probe townhall_health {
    .url = "/api/health";
    .interval = 0.5s;
    .timeout = 1s;
    .window = 3;
    .threshold = 1;
    .initial = 1;
}

# Every townhall node, one backend each, all added to the director in vcl_init. Any node answers
# any request (a node forwards a Space's media requests to the node that runs it), so the edge
# needs no routing of its own. To add a node, copy the block under a new name and add it below.
backend node1 {
    .host = "127.0.0.1";   # TOWNHALL_ORIGIN
    .port = "8080";
    .probe = townhall_health;
    .connect_timeout = 1s;
    .first_byte_timeout = 15s;      # blocking reloads wait up to 3 target durations
    .between_bytes_timeout = 15s;
}

# The same node for the API calls that pass through (sign-ins, bearer requests, stage commands,
# pages): at most `.max_connections` of them in flight at once per node. Past it the edge itself
# answers 503 + Retry-After at once (vcl_backend_error) instead of queueing more on a node that
# is already busy: a join storm of signed-in listeners is told to come back in a second or two by
# the edge, at no cost to the nodes, while the audio keeps flowing. 64 in flight is more than a
# node's event loop turns through in a few tens of milliseconds; raise it for nodes with more
# cores behind one address. Listeners' media and the cached snapshot and Space lookup use `node1`
# above, with no such cap (their fills are collapsed: one per object).
backend node1_api {
    .host = "127.0.0.1";   # TOWNHALL_ORIGIN
    .port = "8080";
    .probe = townhall_health;
    .connect_timeout = 1s;
    .first_byte_timeout = 120s;
    .between_bytes_timeout = 120s;
    .max_connections = 64;
}

sub vcl_init {
    new origin = directors.round_robin();
    origin.add_backend(node1);
    new api = directors.round_robin();
    api.add_backend(node1_api);
}

sub vcl_recv {
    set req.backend_hint = origin.backend();

    # Forwarded headers, once. X-Forwarded-For already ends with the client's address (Varnish
    # appends it before this runs); Proto and Host are this edge's own, whatever the client sent.
    if (proxy.is_ssl()) {
        set req.http.X-Forwarded-Proto = "https";   # TLS ended in front (hitch, PROXY protocol)
    } else {
        set req.http.X-Forwarded-Proto = "http";
    }
    if (req.http.host) {
        set req.http.X-Forwarded-Host = req.http.host;
    } else {
        unset req.http.X-Forwarded-Host;
    }

    # A node's /metrics is for its operator, scraped at the node's own address; never through
    # here (it is protected by TOWNHALL_METRICS_TOKEN anyway: this keeps it off the public face).
    if (req.url ~ "^/+metrics/?(\?|$)") {
        return (synth(404, "No such resource."));
    }
    if (req.http.Upgrade ~ "(?i)websocket") {
        return (pipe);   # the stage's WebSocket: a byte pipe to one node
    }
    if (req.method != "GET" && req.method != "HEAD") {
        # The origin's body caps (src/townhall/api/bounds.py): 64 KB for an SDP offer, 16 KB for
        # any other body, refused here when the Content-Length says so (the origin counts a
        # chunked body itself). A request head is already bounded by Varnish's defaults, tighter
        # than the origin's: http_req_size 32 KB, timeout_req 2 s, timeout_idle 5 s.
        if (req.url ~ "^/api/spaces/[a-z0-9]{10}/rtc(\?|$)") {
            if (std.integer(req.http.Content-Length, 0) > 65536) {
                return (synth(413, "That is more than this request may carry."));
            }
        } else if (std.integer(req.http.Content-Length, 0) > 16384) {
            return (synth(413, "That is more than this request may carry."));
        }
        set req.backend_hint = api.backend();
        return (pass);
    }
    if (req.url ~ "^/live/") {
        set req.http.X-Townhall-Listener = "media";
    } else if (req.url ~ "^/api/spaces/[a-z0-9]{10}/snapshot(\?|$)") {
        set req.http.X-Townhall-Listener = "snapshot";
    } else if (req.url ~ "^/api/spaces/[a-z0-9]{10}(\?|$)") {
        set req.http.X-Townhall-Listener = "lookup";
    } else {
        set req.backend_hint = api.backend();
        return (pass);
    }
    if (req.http.Authorization) {
        set req.backend_hint = api.backend();
        return (pass);
    }
    if (req.http.X-Townhall-Listener == "lookup") {
        if (req.http.Cookie) {
            set req.backend_hint = api.backend();
            return (pass);
        }
    } else {
        unset req.http.Cookie;
    }
    if (req.url ~ "^/live/[^?]*\.m3u8(\?|$)") {
        set req.url = std.querysort(req.url);   # _HLS_part & _HLS_msn in either order: one object
    } else if (req.http.X-Townhall-Listener == "media") {
        set req.url = regsub(req.url, "\?.*$", "");   # objects take no query: no cache busting
    }
    if (req.http.X-Townhall-Listener == "media" && req.http.Range) {
        # A part is a byte range of its segment, asked for while the segment is produced (the
        # preload hint's range has an open end). Each range is its own object, fetched from the
        # origin as a range and streamed to every waiter; Varnish's own range handling (which
        # cannot serve a range of an object still arriving) stays out of it.
        set req.http.X-Townhall-Range = req.http.Range;
        unset req.http.Range;
    }
    return (hash);
}

sub vcl_pipe {
    if (req.http.Upgrade) {
        set bereq.http.Upgrade = req.http.Upgrade;
        set bereq.http.Connection = req.http.Connection;
    }
    return (pipe);
}

sub vcl_hash {
    hash_data(req.url);
    if (req.http.X-Townhall-Range) {
        hash_data(req.http.X-Townhall-Range);
    }
    if (req.http.X-Townhall-Listener == "lookup") {
        # Its links are absolute: one copy per name and scheme the edge was reached by.
        hash_data(req.http.host);
        hash_data(req.http.X-Forwarded-Proto);
    }
    return (lookup);
}

sub vcl_backend_fetch {
    unset bereq.http.X-Townhall-Listener;
    if (bereq.http.X-Townhall-Range) {
        set bereq.http.Range = bereq.http.X-Townhall-Range;
        unset bereq.http.X-Townhall-Range;
    }
    if (bereq.uncacheable) {
        set bereq.first_byte_timeout = 120s;   # the rest of the API: whatever it takes
        set bereq.between_bytes_timeout = 120s;
    }
    return (fetch);
}

sub vcl_backend_response {
    set beresp.do_stream = true;   # waiters get the bytes as they arrive, not once complete
    if (bereq.uncacheable) {
        return (deliver);
    }
    if (beresp.status == 206 && bereq.http.Range && bereq.url ~ "^/live/") {
        # A part (see vcl_recv). Its Content-Range ends in "/*" (the segment's length is not known
        # while it is produced), which Varnish 7.1 refuses as a 206: it is kept as a 200 holding
        # exactly the part, and vcl_deliver gives it back its status and range. Varnish gives a
        # 206 no lifetime of its own; the origin's Cache-Control says how long it holds
        # (immutable, like the segment it is part of).
        set beresp.http.X-Townhall-Content-Range = beresp.http.Content-Range;
        unset beresp.http.Content-Range;
        set beresp.status = 200;
        set beresp.ttl = std.duration(
            regsub(beresp.http.Cache-Control, "^.*max-age=([0-9]+).*$", "\1") + "s", 0s);
        set beresp.grace = 1h;
        if (beresp.ttl > 0s) {
            return (deliver);
        }
    }
    if (beresp.http.Set-Cookie) {
        # An answer that hands out an identity is nobody else's: not kept, and for one second
        # the requests for this object go to the origin one each.
        set beresp.ttl = 1s;
        set beresp.grace = 0s;
        set beresp.uncacheable = true;
        return (deliver);
    }
    if (beresp.status >= 400 && beresp.http.Cache-Control !~ "(?i)(s-maxage|max-age)=[1-9]") {
        # An error without a lifetime of its own (404 not yet produced, 503 Retry-After: 1): the
        # same answer for everyone asking within that second, so the audience's retries cost the
        # origin one request a second instead of one each. Its no-store is for browsers.
        set beresp.ttl = 1s;
        set beresp.grace = 0s;
        set beresp.keep = 0s;
        return (deliver);
    }
    if (beresp.ttl <= 0s || beresp.http.Cache-Control ~ "(?i)no-store|no-cache|private") {
        set beresp.ttl = 1s;
        set beresp.grace = 0s;
        set beresp.uncacheable = true;
        return (deliver);
    }
    if (bereq.url ~ "\.m3u8(\?|$)" || bereq.url !~ "^/live/") {
        # Playlists, the snapshot and the Space: never served past their lifetime. An expired
        # copy is fetched again while those who ask meanwhile wait for that fetch.
        set beresp.grace = 0s;
        set beresp.keep = 0s;
    } else {
        set beresp.grace = 1h;   # immutable: a stale copy is the same bytes, served if the origin is away
    }
    return (deliver);
}

sub vcl_backend_error {
    # The node is gone, did not answer, or has all the API calls in flight it may (`node1_api`'s
    # .max_connections): an idempotent request tries the next node (the director takes them in
    # turn), a few times at most; then a 503 whose Retry-After (1-3 s) spreads a refused crowd.
    if ((bereq.method == "GET" || bereq.method == "HEAD") && bereq.retries < 3) {
        return (retry);
    }
    set beresp.http.Content-Type = "application/json";
    set beresp.http.Retry-After = std.integer(real=std.random(1, 4), fallback=2);
    set beresp.http.Cache-Control = "no-store";
    set beresp.ttl = 0s;   # never kept: the next request may find a node free
    set beresp.body = {"{"error": {"code": "unavailable", "message": "no townhall node could take this request now; try again shortly""} + "}}";
    return (deliver);
}

sub vcl_deliver {
    if (resp.http.X-Townhall-Content-Range) {
        set resp.status = 206;   # a part, kept as a 200 (see vcl_backend_response)
        set resp.http.Content-Range = resp.http.X-Townhall-Content-Range;
        unset resp.http.X-Townhall-Content-Range;
    }
    # As nginx's $upstream_cache_status: HIT (from the cache, also while a fill is streaming),
    # MISS (fetched for this request), BYPASS (passed through).
    if (obj.uncacheable) {
        set resp.http.X-Cache-Status = "BYPASS";
    } else if (obj.hits > 0) {
        set resp.http.X-Cache-Status = "HIT";
    } else {
        set resp.http.X-Cache-Status = "MISS";
    }
    return (deliver);
}

sub vcl_synth {
    # Varnish's own answers (a malformed request, say): JSON like the origin's, never a page.
    set resp.http.Content-Type = "application/json";
    set resp.http.Cache-Control = "no-store";
    if (resp.status >= 500) {
        set resp.http.Retry-After = "1";
        set resp.body = {"{"error": {"code": "unavailable", "message": ""} + resp.reason + {"""} + "}}";
    } else if (resp.status == 413) {
        set resp.body = {"{"error": {"code": "too_large", "message": ""} + resp.reason + {"""} + "}}";
    } else if (resp.status == 404) {
        set resp.body = {"{"error": {"code": "not_found", "message": ""} + resp.reason + {"""} + "}}";
    } else {
        set resp.body = {"{"error": {"code": "bad_request", "message": ""} + resp.reason + {"""} + "}}";
    }
    return (deliver);
}
