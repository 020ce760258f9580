-- wrk script: signed Meta webhook POSTs with a unique mid each, so JetStream stores every
-- event (no duplicate short-cut). HMAC-SHA256 through OpenSSL via LuaJIT's FFI.
--   BENCH_SECRET   app secret           BENCH_BATCH  events per POST (default 1)
--   BENCH_DELAY_MS pause before each request of a connection (0: as fast as possible)
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
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
local mac = ffi.new("unsigned char[32]")
local maclen = ffi.new("unsigned int[1]")

local counter = 0
local prefix = ""
local threads = {}

function setup(thread)
    thread:set("tid", #threads + 1)
    table.insert(threads, thread)
end

function init(args)
    prefix = string.format("b%d-%d-", tid or 0, math.random(1, 1e9))
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
    local hex = {}
    for i = 0, 31 do hex[i + 1] = string.format("%02x", mac[i]) end
    return wrk.format("POST", "/api/v1/webhooks/meta", {
        ["Content-Type"] = "application/json",
        ["X-Hub-Signature-256"] = "sha256=" .. table.concat(hex),
    }, body)
end

if pause > 0 then
    function delay() return pause end
end

local non200 = 0
function response(status, headers, body)
    if status ~= 200 then non200 = non200 + 1 end
end

function done(summary, latency, requests)
    -- One machine-readable line for the run script.
    io.write(string.format("RESULT requests=%d seconds=%.3f p50_us=%d p99_us=%d errors=%d " ..
                           "non2xx=%d\n",
        summary.requests, summary.duration / 1e6, latency:percentile(50),
        latency:percentile(99), summary.errors.connect + summary.errors.read +
        summary.errors.write + summary.errors.timeout, summary.errors.status))
end
