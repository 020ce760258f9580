-- wrk script: signed Meta webhook POSTs with a unique mid each, so JetStream stores every
-- event (no duplicate short-cut). HMAC-SHA256 through OpenSSL via LuaJIT's FFI.
--   BENCH_SECRET   app secret           BENCH_BATCH  events per POST (default 1)
--   BENCH_RUN_ID   what makes this invocation's mids its own: m_<run id>_<thread>_<counter>.
--                  Give each wrk invocation its own (without it, 8 bytes of /dev/urandom).
--                  Not math.random: wrk never seeds it, so every run drew the same "random"
--                  prefix and JetStream dropped the repeats as duplicates.
-- Closed loop only: a paced mode (wrk's delay()) would time each request from when it left,
-- not from when it was due; tests/bench/ingest/bench_post.c is the paced load.
local ffi = require("ffi")
ffi.cdef [[
typedef struct evp_md_st EVP_MD;
const EVP_MD *EVP_sha256(void);
unsigned char *HMAC(const EVP_MD *md, const void *key, int key_len, const unsigned char *d,
                    size_t n, unsigned char *out, unsigned int *out_len);
]]
local crypto = ffi.load("libcrypto.so.3")
local secret = os.getenv("BENCH_SECRET") or "bench-secret"
local batch = tonumber(os.getenv("BENCH_BATCH") or "1")
local mac = ffi.new("unsigned char[32]")
local maclen = ffi.new("unsigned int[1]")

-- The load generator shares the machine's cores with what it measures: it does as little
-- per request as it can (hex from a table, no response() callback: wrk counts the non-2xx
-- answers itself, in summary.errors.status).
local hexbyte = {}
for i = 0, 255 do hexbyte[i] = string.format("%02x", i) end
local hex = {}

local counter = 0
local prefix = ""
local threads = {}

function setup(thread)
    thread:set("tid", #threads + 1)
    table.insert(threads, thread)
end

local function run_id()
    local id = os.getenv("BENCH_RUN_ID")
    if id ~= nil and id ~= "" then return id end
    local f = assert(io.open("/dev/urandom", "rb"))
    local raw = f:read(8)
    f:close()
    return (raw:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

function init(args)
    prefix = string.format("%s_%d_", run_id(), tid or 0)
end

local text = "Hi! Is the blue jacket from your summer collection still available in size M? "
          .. "I would like to pick it up this weekend if possible."

local function event(i)
    return string.format(
        '{"sender":{"id":"7012345678901234"},"recipient":{"id":"106123456789012"},' ..
        '"timestamp":1732870000000,"message":{"mid":"m_%s%d","text":"%s"}}', prefix, i, text)
end

function request()
    local events = {}
    for _ = 1, batch do
        counter = counter + 1
        events[#events + 1] = event(counter)
    end
    local body = '{"object":"page","entry":[{"id":"106123456789012","time":1732870000123,' ..
                 '"messaging":[' .. table.concat(events, ",") .. ']}]}'
    crypto.HMAC(crypto.EVP_sha256(), secret, #secret, body, #body, mac, maclen)
    for i = 0, 31 do hex[i + 1] = hexbyte[mac[i]] end
    return wrk.format("POST", "/api/v1/webhooks/meta", {
        ["Content-Type"] = "application/json",
        ["X-Hub-Signature-256"] = "sha256=" .. table.concat(hex),
    }, body)
end

function done(summary, latency, requests)
    -- One machine-readable line for the run script.
    io.write(string.format("RESULT requests=%d seconds=%.3f p50_us=%d p99_us=%d errors=%d " ..
                           "non2xx=%d\n",
        summary.requests, summary.duration / 1e6, latency:percentile(50),
        latency:percentile(99), summary.errors.connect + summary.errors.read +
        summary.errors.write + summary.errors.timeout, summary.errors.status))
end
