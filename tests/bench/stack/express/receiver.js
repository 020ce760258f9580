// tests/bench/stack/express/receiver.js: the receiver webhook-ingest is compared with, written
// the way a Node team would write it: Express, Meta's X-Hub-Signature-256 checked over the raw
// body, every event of the POST published to the same JetStream stream and subject as ingest
// (meta.events.<platform>.<account>.<kind>, Nats-Msg-Id for deduplication), and 200 only
// once JetStream acknowledged them all, 503 otherwise: durable, as ingest is. It connects as
// webhook-ingest's identity (TLS with its client certificate, its private inbox prefix), so the
// nats-server enforces the same permissions on both.
//
// Settings (environment): LISTEN_PORT, META_APP_SECRET, NATS_URL, NATS_CA_FILE,
// NATS_CERT_FILE, NATS_KEY_FILE, NATS_IDENTITY (default webhook-ingest).
"use strict";
const crypto = require("crypto");
const express = require("express");
const { connect, headers } = require("nats");

const secret = process.env.META_APP_SECRET;
const identity = process.env.NATS_IDENTITY || "webhook-ingest";

// The kinds ingest publishes for messaging[] events; the benchmark sends only messages, but a
// receiver that classified nothing would not be doing ingest's work.
function kindOf(ev) {
  if (ev.message) {
    if (ev.message.is_echo) return "echo";
    if (ev.message.is_deleted) return "unsend";
    return "message";
  }
  if (ev.message_edit) return "edit";
  if (ev.reaction) return "reaction";
  if (ev.read) return "read";
  if (ev.delivery) return "delivery";
  if (ev.postback) return "postback";
  return "other";
}

function signatureOk(raw, header) {
  if (typeof header !== "string" || !header.startsWith("sha256=")) return false;
  const want = Buffer.from(
    "sha256=" + crypto.createHmac("sha256", secret).update(raw).digest("hex"));
  const got = Buffer.from(header);
  return got.length === want.length && crypto.timingSafeEqual(got, want);
}

async function main() {
  const tls = process.env.NATS_CA_FILE
    ? { caFile: process.env.NATS_CA_FILE, certFile: process.env.NATS_CERT_FILE,
        keyFile: process.env.NATS_KEY_FILE }
    : undefined;
  const nc = await connect({ servers: process.env.NATS_URL.replace(/^tls:\/\//, ""), tls,
                             inboxPrefix: `_INBOX.${identity}` });
  const js = nc.jetstream();
  const app = express();

  app.get("/readyz", (req, res) => res.json({ status: "ok" }));
  app.post("/api/v1/webhooks/meta", express.raw({ type: () => true, limit: "8mb" }),
    async (req, res) => {
      if (!signatureOk(req.body, req.get("X-Hub-Signature-256")))
        return res.status(401).json({ error: "bad signature" });
      let body;
      try {
        body = JSON.parse(req.body);
      } catch (e) {
        return res.status(400).json({ error: "not JSON" });
      }
      const platform = body.object === "instagram" ? "instagram" : "messenger";
      const acks = [];
      for (const entry of body.entry || []) {
        for (const ev of entry.messaging || []) {
          const kind = kindOf(ev);
          const mid = ev.message && ev.message.mid;
          const data = JSON.stringify({ platform, account_id: entry.id, source: "messaging",
                                        kind, entry_time: entry.time, event: ev });
          const msgID = mid ? `${platform}:${entry.id}:${kind}:${mid}`
            : "sha256:" + crypto.createHash("sha256").update(JSON.stringify(ev)).digest("hex");
          acks.push(js.publish(`meta.events.${platform}.${entry.id}.${kind}`,
                               Buffer.from(data), { msgID }));
        }
      }
      try {
        const done = await Promise.all(acks);
        res.json({ status: "ok", duplicates: done.filter((a) => a.duplicate).length });
      } catch (e) {
        res.status(503).json({ error: "not stored" });
      }
    });
  app.listen(Number(process.env.LISTEN_PORT), "127.0.0.1");
}

main().catch((e) => {
  console.error("receiver:", e.message);
  process.exit(1);
});
