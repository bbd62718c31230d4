/* Verify an incident's timeline in the browser, trusting nothing the server says.
   Recomputes every content_hash and hash (canonical JSON as in docs/integrity.md:
   keys sorted by code point, no spaces, UTF-8, non-ASCII literal), follows prev_hash
   from the genesis hash, checks redaction announcements and the Ed25519 checkpoint. */
(function () {
  "use strict";
  var FIELDS = ["incident", "seq", "kind", "posted_at", "event_time", "author", "corrects",
    "status", "sms", "figures", "approved_by", "redacts", "question",
    "update_interval_minutes", "severity", "advice", "summary", "area", "pinned",
    "content_hash", "prev_hash"];
  var WHAT = {
    "zh-CN": { content: "正文与内容哈希不符", hash: "字段与链哈希不符", prev: "与前一条的哈希链断开",
      seq: "序号缺失或顺序被改", redact: "内容被删除但没有删除公告", field: "缺少字段",
      head: "与签名的最新状态不符", keys: "签名密钥不在公布的密钥中", https: "浏览器核验需要 HTTPS 连接" },
    en: { content: "body does not match its content hash", hash: "fields do not match the chain hash",
      prev: "the hash chain is broken here", seq: "an entry is missing or out of order",
      redact: "text withheld without a redaction entry", field: "a field is missing",
      head: "does not match the signed head", keys: "the signing key is not among the published keys",
      https: "verifying in the browser needs HTTPS" }
  };
  var enc = new TextEncoder();

  function cmp(a, b) { // code point order, as Python's sort_keys
    var x = Array.from(a), y = Array.from(b);
    for (var i = 0; i < Math.min(x.length, y.length); i++) {
      var d = x[i].codePointAt(0) - y[i].codePointAt(0);
      if (d) return d;
    }
    return x.length - y.length;
  }
  function canon(v) {
    if (v === null || typeof v !== "object") {
      if (typeof v === "number" && !Number.isInteger(v)) throw new Error("float");
      return JSON.stringify(v); // same escapes as json.dumps(ensure_ascii=False) for these types
    }
    if (Array.isArray(v)) return "[" + v.map(canon).join(",") + "]";
    return "{" + Object.keys(v).sort(cmp).map(function (k) {
      return JSON.stringify(k) + ":" + canon(v[k]);
    }).join(",") + "}";
  }
  function hex(buf) {
    return Array.from(new Uint8Array(buf), function (b) { return (b < 16 ? "0" : "") + b.toString(16); }).join("");
  }
  function sha(bytes) {
    return crypto.subtle.digest("SHA-256", bytes).then(function (d) { return "sha256:" + hex(d); });
  }
  function unhex(s) {
    var out = new Uint8Array(s.length / 2);
    for (var i = 0; i < out.length; i++) out[i] = parseInt(s.substr(i * 2, 2), 16);
    return out;
  }
  function unb64url(s) {
    var b = atob(s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4));
    return Uint8Array.from(b, function (c) { return c.charCodeAt(0); });
  }
  function getJson(url) {
    return fetch(url, { cache: "no-store" }).then(function (r) {
      if (!r.ok && r.status !== 404) throw new Error("HTTP " + r.status);
      return r.json().then(function (j) { return r.ok ? j : null; });
    });
  }
  function all(base, after, acc) {
    return getJson(base + "/entries?limit=1000&after=" + after).then(function (page) {
      acc = acc.concat(page.entries);
      return page.entries.length === 1000 ? all(base, acc[acc.length - 1].seq, acc) : acc;
    });
  }

  async function check(id, entries, cp, keys) {
    var prev = await sha(enc.encode("broadcaster:genesis:" + id)), announced = {}, hashes = {};
    for (var i = 0; i < entries.length; i++) {
      var e = entries[i];
      if (e.seq !== i + 1 || e.incident !== id) return { seq: i + 1, what: "seq" };
      if (e.prev_hash !== prev) return { seq: e.seq, what: "prev" };
      if (!e.redacted) {
        var salt = unhex(e.salt || ""), body = enc.encode(e.body), both = new Uint8Array(salt.length + body.length);
        both.set(salt);
        both.set(body, salt.length);
        if (await sha(both) !== e.content_hash) return { seq: e.seq, what: "content" };
      } else if (e.body || e.salt) return { seq: e.seq, what: "content" };
      var rec = {};
      for (var f = 0; f < FIELDS.length; f++) {
        if (!(FIELDS[f] in e)) return { seq: e.seq, what: "field" };
        rec[FIELDS[f]] = e[FIELDS[f]];
      }
      if (await sha(enc.encode(canon(rec))) !== e.hash) return { seq: e.seq, what: "hash" };
      if (e.kind === "redaction") announced[e.redacts] = true;
      hashes[e.seq] = prev = e.hash;
    }
    for (i = 0; i < entries.length; i++) {
      if (entries[i].redacted && !announced[entries[i].seq]) return { seq: entries[i].seq, what: "redact" };
    }
    if (!cp) return entries.length ? { sig: true } : null;
    var key = (keys.keys || []).filter(function (k) { return k.key_id === cp.key_id; })[0];
    if (!key) return { what: "keys" };
    var raw = unb64url(key.public_key);
    if (hex(await crypto.subtle.digest("SHA-256", raw)).slice(0, 16) !== cp.key_id) return { sig: true };
    var body = { incident: cp.incident, seq: cp.seq, hash: cp.hash, signed_at: cp.signed_at, key_id: cp.key_id };
    var pub = await crypto.subtle.importKey("raw", raw, { name: "Ed25519" }, false, ["verify"]);
    var ok = await crypto.subtle.verify({ name: "Ed25519" }, pub, unb64url(cp.signature), enc.encode(canon(body)));
    if (!ok || cp.incident !== id) return { sig: true };
    if (hashes[cp.seq] !== cp.hash || cp.seq !== entries.length) return { seq: cp.seq, what: "head" };
    return null;
  }

  window.bcVerify = function (C, out, button) {
    var S = C.l.s, W = WHAT[C.lang] || WHAT["zh-CN"];
    function show(text, cls) { out.textContent = text; out.className = "vres " + cls; }
    if (!window.crypto || !crypto.subtle) { show(W.https, "bad"); return; }
    var base = "/api/incidents/" + encodeURIComponent(C.id);
    button.disabled = true;
    show(S.verify_checking, "");
    Promise.all([all(base, 0, []), getJson(base + "/checkpoint"), getJson("/.well-known/broadcaster-keys.json")])
      .then(function (r) {
        return check(C.id, r[0], r[1], r[2] || {}).then(function (bad) {
          if (!bad) show(S.verify_ok.replace("{n}", r[0].length), "ok");
          else if (bad.sig) show(S.verify_sig, "bad");
          else if (bad.seq == null) show(S.verify_error.replace("{why}", W[bad.what]), "bad");
          else show(S.verify_bad.replace("{seq}", bad.seq).replace("{what}", W[bad.what]), "bad");
        });
      })
      .catch(function (err) { show(S.verify_error.replace("{why}", err.message), "bad"); })
      .then(function () { button.disabled = false; });
  };
})();
