/* Verify an incident in the browser, trusting nothing the server says (docs/integrity.md).
   Order matters while entries are appended: the log checkpoint first, then the incident's
   signed head, then the timeline; everything is checked up to what the signatures cover.
   1. the site's transparency log: the C2SP checkpoint's Ed25519 signature (keys from
      /.well-known/broadcaster-keys.json, signed-note key IDs), every leaf from the entry
      bundles hashing (RFC 6962) to its root, the key in force per the log's announcements,
      and consistency with the checkpoint this browser saw last (localStorage);
   2. the timeline: every content_hash and hash (canonical JSON: keys sorted by code point,
      no spaces, UTF-8, non-ASCII literal), prev_hash from the genesis hash, redaction
      announcements and the Ed25519 head; then each of the incident's leaves in the log;
   3. what the page shows: each entry's text must be the verified entry's text, its numbers
      must come from the hashed body, figures and the title must be the verified ones. */
(function () {
  "use strict";
  var FIELDS = ["incident", "seq", "kind", "posted_at", "event_time", "author", "corrects",
    "status", "sms", "figures", "approved_by", "redacts", "question",
    "update_interval_minutes", "severity", "advice", "summary", "area", "pinned",
    "content_hash", "prev_hash"];
  var CREATION = ["incident", "title", "summary", "advice", "severity", "area", "started_at",
    "created_by"];
  var WHAT = {
    "zh-CN": { content: "正文与内容哈希不符", hash: "字段与链哈希不符", prev: "与前一条的哈希链断开",
      seq: "序号缺失或顺序被改", redact: "内容被删除但没有删除公告", field: "缺少字段",
      head: "与签名的最新状态不符", keys: "签名密钥不在公布的密钥中", https: "浏览器核验需要 HTTPS 连接",
      logsig: "透明日志的签名无效", logroot: "透明日志的条目与签名的根哈希不符",
      logkey: "透明日志的签名密钥未经日志公告", shrank: "透明日志比上次看到的短（回滚）",
      fork: "透明日志与上次看到的不一致（历史被改写）", loghash: "与透明日志中的哈希不符",
      rollback: "透明日志中有更晚的条目，时间线被截短", unlogged: "未记入透明日志",
      creation: "事件创建记录与透明日志不符", shown: "本页显示的文字与核验的内容不符",
      title: "本页显示的标题与创建记录不符", figs: "本页显示的数字与核验的数据不符",
      deleted: "事件在透明日志中，但网站已不再提供" },
    en: { content: "body does not match its content hash", hash: "fields do not match the chain hash",
      prev: "the hash chain is broken here", seq: "an entry is missing or out of order",
      redact: "text withheld without a redaction entry", field: "a field is missing",
      head: "does not match the signed head", keys: "the signing key is not among the published keys",
      https: "verifying in the browser needs HTTPS",
      logsig: "the transparency log's signature is not valid",
      logroot: "the transparency log's entries do not match its signed root",
      logkey: "the transparency log is signed by a key the log never announced",
      shrank: "the transparency log is shorter than when last seen (rollback)",
      fork: "the transparency log is not consistent with the one seen before (history rewritten)",
      loghash: "does not match the hash in the transparency log",
      rollback: "the transparency log holds later entries: the timeline was cut short",
      unlogged: "missing from the transparency log",
      creation: "the incident's creation record does not match the transparency log",
      shown: "the text shown on this page differs from the verified entry",
      title: "the title shown differs from the creation record",
      figs: "a number shown differs from the verified figures",
      deleted: "the incident is in the transparency log but no longer served" }
  };
  var LOG_LINE = {
    "zh-CN": "已与透明日志 {origin} 核对（{size} 条）；本页显示的 {shown} 条内容与核验数据一致。",
    en: "Checked against the transparency log {origin} ({size} entries); the {shown} entries shown match the verified data."
  };
  var enc = new TextEncoder(), dec = new TextDecoder("utf-8", { fatal: true });

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
  function digest(bytes) {
    return crypto.subtle.digest("SHA-256", bytes).then(function (d) { return new Uint8Array(d); });
  }
  function cat(parts) {
    var n = 0, i, out;
    for (i = 0; i < parts.length; i++) n += parts[i].length;
    out = new Uint8Array(n);
    for (n = 0, i = 0; i < parts.length; i++) { out.set(parts[i], n); n += parts[i].length; }
    return out;
  }
  function same(a, b) {
    if (a.length !== b.length) return false;
    for (var i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }
  function unhex(s) {
    var out = new Uint8Array(s.length / 2);
    for (var i = 0; i < out.length; i++) out[i] = parseInt(s.substr(i * 2, 2), 16);
    return out;
  }
  function unb64(s) { return Uint8Array.from(atob(s), function (c) { return c.charCodeAt(0); }); }
  function b64(bytes) { return btoa(String.fromCharCode.apply(null, Array.from(bytes))); }
  function unb64url(s) {
    return unb64(s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4));
  }
  function ed25519(raw, sig, msg) {
    return crypto.subtle.importKey("raw", raw, { name: "Ed25519" }, false, ["verify"])
      .then(function (pub) { return crypto.subtle.verify({ name: "Ed25519" }, pub, sig, msg); })
      .catch(function () { return false; });
  }
  function getJson(url) {
    return fetch(url, { cache: "no-store" }).then(function (r) {
      if (!r.ok && r.status !== 404) throw new Error("HTTP " + r.status);
      return r.json().then(function (j) { return r.ok ? j : null; });
    });
  }
  function getBytes(url) {
    return fetch(url).then(function (r) { // immutable tiles: the HTTP cache may answer
      if (!r.ok) throw new Error(url + ": HTTP " + r.status);
      return r.arrayBuffer().then(function (b) { return new Uint8Array(b); });
    });
  }
  function all(base, after, acc) {
    return getJson(base + "/entries?limit=1000&after=" + after).then(function (page) {
      acc = acc.concat(page.entries);
      var more = page.more || page.entries.length === 1000; // a page also stops at 2 MiB
      return more && page.entries.length ? all(base, acc[acc.length - 1].seq, acc) : acc;
    });
  }

  /* ---- the transparency log ---- */
  function parseNote(text) {
    var cut = text.lastIndexOf("\n\n");
    if (cut < 0) throw new Error("not a signed note");
    var body = text.slice(0, cut + 1), lines = body.slice(0, -1).split("\n");
    var sigs = text.slice(cut + 2).split("\n").filter(Boolean).map(function (line) {
      var m = /^\u2014 (\S+) (\S+)$/.exec(line);
      if (!m) throw new Error("bad signature line");
      var raw = unb64(m[2]);
      return { name: m[1], id: raw.slice(0, 4), sig: raw.slice(4) };
    });
    if (lines.length < 3 || !/^(0|[1-9][0-9]*)$/.test(lines[1])) throw new Error("not a checkpoint");
    return { body: body, origin: lines[0], size: parseInt(lines[1], 10), root: unb64(lines[2]), sigs: sigs };
  }
  async function noteKeyId(name, raw) {
    return (await digest(cat([enc.encode(name + "\n"), new Uint8Array([1]), raw]))).slice(0, 4);
  }
  async function signerOf(note, keys) { // the listed key whose signature verifies, or null
    var listed = keys.keys || [];
    for (var i = 0; i < listed.length; i++) {
      var raw = unb64url(listed[i].public_key), id = await noteKeyId(note.origin, raw);
      for (var j = 0; j < note.sigs.length; j++) {
        var s = note.sigs[j];
        if (s.name === note.origin && same(s.id, id)) {
          return (await ed25519(raw, s.sig, enc.encode(note.body))) ? listed[i] : null;
        }
      }
    }
    return null;
  }
  function encodeIndex(n) {
    var parts = [];
    do { parts.unshift(("00" + (n % 1000)).slice(-3)); n = Math.floor(n / 1000); } while (n > 0);
    return parts.map(function (p, i) { return i < parts.length - 1 ? "x" + p : p; }).join("/");
  }
  async function leavesOf(size) {
    var out = [];
    for (var i = 0; i * 256 < size; i++) {
      var w = Math.min(256, size - i * 256);
      var data = await getBytes("/log/tile/entries/" + encodeIndex(i) + (w < 256 ? ".p/" + w : ""));
      for (var p = 0; p < data.length;) {
        var n = (data[p] << 8) | data[p + 1];
        out.push(data.slice(p + 2, p + 2 + n));
        p += 2 + n;
      }
    }
    return out.slice(0, size);
  }
  async function rootOf(hashes) { // RFC 6962 MTH: pair up, an odd last node moves up as is
    if (!hashes.length) return digest(new Uint8Array(0));
    var level = hashes;
    while (level.length > 1) {
      var next = [];
      for (var i = 0; i + 1 < level.length; i += 2) {
        next.push(await digest(cat([new Uint8Array([1]), level[i], level[i + 1]])));
      }
      if (level.length % 2) next.push(level[level.length - 1]);
      level = next;
    }
    return level[0];
  }
  async function checkLog(text, keys) {
    var note = parseNote(text), key = await signerOf(note, keys);
    if (!key) return { bad: { what: "logsig" } };
    var raws = await leavesOf(note.size), hashes = [], parsed = [], i;
    for (i = 0; i < raws.length; i++) {
      hashes.push(await digest(cat([new Uint8Array([0]), raws[i]])));
      parsed.push(JSON.parse(dec.decode(raws[i])));
    }
    if (raws.length !== note.size || !same(await rootOf(hashes), note.root)) return { bad: { what: "logroot" } };
    var pub = {}, inForce = null, first = null, announced = false;
    (keys.keys || []).forEach(function (k) { pub[k.key_id] = k.public_key; });
    for (i = 0; i < parsed.length; i++) {
      var a = parsed[i];
      if (a.type !== "key") continue;
      var body = { type: "key", key_id: a.key_id, public_key: a.public_key, valid_from: a.valid_from, replaces: a.replaces };
      var old = pub[a.replaces];
      if ((inForce && a.replaces !== inForce) || !old ||
          !(await ed25519(unb64url(old), unb64url(a.signature), enc.encode(canon(body))))) {
        return { bad: { what: "logkey" } };
      }
      if (!first) first = a.replaces;
      inForce = a.key_id;
      announced = true;
    }
    var slot = "bc-log:" + note.origin, seen = null;
    try { seen = JSON.parse(localStorage.getItem(slot) || "null"); } catch (x) { seen = null; }
    var expected = inForce || (seen && seen.key) || null;
    if (expected && key.key_id !== expected) return { bad: { what: "logkey" } };
    if (seen && seen.key && announced && seen.key !== first &&
        !parsed.some(function (l) { return l.type === "key" && l.key_id === seen.key; })) {
      return { bad: { what: "logkey" } };
    }
    if (seen) {
      if (note.size < seen.size) return { bad: { what: "shrank" } };
      if (!same(await rootOf(hashes.slice(0, seen.size)), unb64(seen.root))) return { bad: { what: "fork" } };
    }
    try {
      localStorage.setItem(slot, JSON.stringify({ size: note.size, root: b64(note.root), key: key.key_id }));
    } catch (x) { /* private mode: nothing is remembered */ }
    return { note: note, leaves: parsed };
  }

  /* ---- the timeline ---- */
  async function check(id, entries, cp, keys) {
    var prev = await sha(enc.encode("broadcaster:genesis:" + id)), announced = {}, hashes = {};
    for (var i = 0; i < entries.length; i++) {
      var e = entries[i];
      if (e.seq !== i + 1 || e.incident !== id) return { seq: i + 1, what: "seq" };
      if (e.prev_hash !== prev) return { seq: e.seq, what: "prev" };
      if (!e.redacted) {
        if (await sha(cat([unhex(e.salt || ""), enc.encode(e.body)])) !== e.content_hash) return { seq: e.seq, what: "content" };
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
    var ok = await ed25519(raw, unb64url(cp.signature), enc.encode(canon(body)));
    if (!ok || cp.incident !== id) return { sig: true };
    if (hashes[cp.seq] !== cp.hash) return { seq: cp.seq, what: "head" };
    return null;
  }
  async function checkAgainstLog(id, incident, entries, leaves) {
    var logged = {}, top = 0, seq;
    leaves.forEach(function (l) {
      if (l.type === "key" || l.incident !== id) return;
      (logged[l.seq] = logged[l.seq] || []).push(l.hash);
      top = Math.max(top, l.seq);
    });
    for (seq in logged) if (logged[seq].length > 1) return { seq: +seq, what: "loghash" };
    if (logged[0]) {
      var c = incident.creation, rec = {};
      if (!c || !c.record) return { seq: 0, what: "creation" };
      CREATION.forEach(function (k) { rec[k] = c.record[k]; });
      if (await sha(enc.encode(canon(rec))) !== logged[0][0] || c.record.incident !== id) return { seq: 0, what: "creation" };
    }
    for (seq = 1; seq <= top; seq++) {
      if (seq > entries.length) return { seq: seq, what: "rollback" };
      if (!logged[seq]) return { seq: seq, what: "unlogged" };
      if (logged[seq][0] !== entries[seq - 1].hash) return { seq: seq, what: "loghash" };
    }
    return null;
  }

  /* ---- what the page shows ---- */
  function norm(s) { return s.replace(/\s+/g, " ").trim(); }
  function textOf(html) {
    var t = document.createElement("template");
    t.innerHTML = html;
    return norm(t.content.textContent);
  }
  function numbers(s) { return s.replace(/[,，]/g, "").match(/\d+/g) || []; }
  function shownProblems(incident, bySeq, figures) {
    var shown = document.querySelectorAll("#timeline article.entry[data-seq]"), checked = 0;
    for (var i = 0; i < shown.length; i++) {
      var a = shown[i], e = bySeq[+a.getAttribute("data-seq")];
      if (!e) continue; // newer than what the signatures cover: not vouched for yet
      var body = a.querySelector(".body"), text = textOf(e.html);
      if (!body || norm(body.textContent) !== text) return { bad: { seq: e.seq, what: "shown" } };
      if (!e.redacted) {
        var source = numbers(e.body);
        if (numbers(text).some(function (n) { return source.indexOf(n) < 0; })) return { bad: { seq: e.seq, what: "shown" } };
      }
      var dd = a.querySelectorAll(".efigs dd"), mine = e.figures ? Object.keys(e.figures).map(function (k) { return String(e.figures[k]); }) : [];
      for (var j = 0; j < dd.length; j++) {
        if (numbers(dd[j].textContent).some(function (n) { return mine.indexOf(n) < 0; })) return { bad: { seq: e.seq, what: "figs" } };
      }
      checked++;
    }
    var big = document.querySelectorAll(".figlist .num");
    for (i = 0; i < big.length; i++) {
      if (numbers(big[i].textContent).some(function (n) { return figures.indexOf(n) < 0; })) return { bad: { what: "figs" } };
    }
    var h1 = document.querySelector("main h1");
    if (h1 && incident.creation && norm(h1.textContent) !== norm(incident.creation.record.title)) return { bad: { what: "title" } };
    return { checked: checked };
  }

  window.bcVerify = function (C, out, button) {
    var S = C.l.s, W = WHAT[C.lang] || WHAT["zh-CN"], logOut = document.getElementById("verify-log");
    function show(text, cls) { out.textContent = text; out.className = "vres " + cls; }
    function bad(b) {
      if (b.sig) show(S.verify_sig, "bad");
      else if (b.what === "keys") show(S.verify_error.replace("{why}", W[b.what]), "bad");
      else if (b.seq == null) show(S.verify_tampered.replace("{what}", W[b.what]), "bad");
      else show(S.verify_bad.replace("{seq}", b.seq).replace("{what}", W[b.what]), "bad");
    }
    if (!window.crypto || !crypto.subtle) { show(W.https, "bad"); return; }
    var base = "/api/incidents/" + encodeURIComponent(C.id);
    button.disabled = true;
    if (logOut) logOut.textContent = "";
    show(S.verify_checking, "");
    (async function () {
      var logText = await fetch("/log/checkpoint", { cache: "no-store" }).then(function (r) {
        if (!r.ok) throw new Error("/log/checkpoint: HTTP " + r.status);
        return r.text();
      });
      var keys = (await getJson("/.well-known/broadcaster-keys.json")) || {};
      var log = await checkLog(logText, keys);
      if (log.bad) return bad(log.bad);
      var incident = await getJson(base), cp = await getJson(base + "/checkpoint");
      if (!incident) {
        var held = log.leaves.some(function (l) { return l.incident === C.id; });
        return held ? bad({ what: "deleted" }) : show(S.verify_error.replace("{why}", "404"), "bad");
      }
      var entries = await all(base, 0, []), top = 0;
      log.leaves.forEach(function (l) { if (l.incident === C.id) top = Math.max(top, l.seq); });
      var covered = Math.max(cp ? cp.seq : 0, top), signed = entries.slice(0, covered);
      var b = await check(C.id, signed, cp, keys) || await checkAgainstLog(C.id, incident, entries, log.leaves);
      if (b) return bad(b);
      var bySeq = {}, figures = [];
      signed.forEach(function (e) {
        bySeq[e.seq] = e;
        if (e.figures) Object.keys(e.figures).forEach(function (k) { figures.push(String(e.figures[k])); });
      });
      var page = shownProblems(incident, bySeq, figures);
      if (page.bad) return bad(page.bad);
      show(S.verify_ok.replace("{n}", signed.length), "ok");
      if (logOut) {
        logOut.textContent = (LOG_LINE[C.lang] || LOG_LINE["zh-CN"]).replace("{origin}", log.note.origin)
          .replace("{size}", log.note.size).replace("{shown}", page.checked);
      }
    })()
      .catch(function (err) { show(S.verify_error.replace("{why}", err.message), "bad"); })
      .then(function () { button.disabled = false; });
  };
})();
