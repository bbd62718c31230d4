/* Live updates for an incident page: WebSocket, SSE fallback, resume with after=.
   New entries enter hidden; they show at once only if the timeline top is in view
   and the tab is visible, else a "N 条新动态" button (Guardian Liveness pattern). */
(function () {
  "use strict";
  var cfgEl = document.getElementById("live-config");
  if (!cfgEl) return;
  var C = JSON.parse(cfgEl.textContent), L = C.l, S = L.s, zh = C.lang !== "en";
  var $ = function (id) { return document.getElementById(id); };
  var tl = $("timeline"), toast = $("toast"), state = $("live-state"), pauseBtn = $("pause");
  var title = document.title, last = C.head, pending = [], retry = 0, timer = 0;
  var ws = null, es = null, useSse = !("WebSocket" in window), wsFails = 0;
  var hiddenTimer = 0, asleep = false, asOf = new Date();
  var paused = false;
  try { paused = localStorage.getItem("bc-paused") === "1"; } catch (x) { /* private mode */ }

  function fmt(s, o) { return s.replace(/\{(\w+)\}/g, function (m, k) { return o[k]; }); }
  // A redacted entry's text leaves the page everywhere it appears: the
  // timeline article and the key-events list (same label as the server's).
  function withdraw(x) {
    var gone = $("e" + x.seq), tmp = el("div");
    tmp.innerHTML = x.html; // the server's redaction notice
    if (gone) {
      gone.querySelector(".body").innerHTML = x.html;
      var figs = gone.querySelector(".efigs");
      if (figs) figs.remove();
      gone.classList.add("is-redacted");
    }
    document.querySelectorAll('.keys a[href$="#e' + x.seq + '"]').forEach(function (a) {
      var t = a.querySelector("time");
      a.textContent = "";
      if (t) a.append(t, " ");
      a.append((L.kinds[x.kind] || x.kind) + "：" + tmp.textContent.trim().slice(0, 40));
    });
  }
  function el(tag, cls, text) {
    var n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text != null) n.textContent = text;
    return n;
  }
  var tz = { timeZone: "Asia/Shanghai", hour12: false };
  var tf = new Intl.DateTimeFormat(C.lang, Object.assign({ hour: "2-digit", minute: "2-digit" }, tz));
  var df = new Intl.DateTimeFormat(C.lang, Object.assign({ year: "numeric", month: "long", day: "numeric", hour: "2-digit", minute: "2-digit" }, tz));
  var dayf = new Intl.DateTimeFormat("en-CA", Object.assign({ year: "numeric", month: "2-digit", day: "2-digit" }, tz));
  var rtf = window.Intl && Intl.RelativeTimeFormat ? new Intl.RelativeTimeFormat(C.lang, { numeric: "always" }) : null;
  var nf = new Intl.NumberFormat(C.lang);

  function when(d) { return dayf.format(d) === dayf.format(new Date()) ? tf.format(d) : df.format(d); }
  function iso8(d) { return new Date(d.getTime() + 288e5).toISOString().slice(0, 19) + "+08:00"; }
  function ago(d) {
    var s = (Date.now() - d.getTime()) / 1000;
    if (!rtf || s > 86400) return "";
    if (s < 60) return zh ? "刚刚" : "just now";
    return s < 3600 ? rtf.format(-Math.floor(s / 60), "minute") : rtf.format(-Math.floor(s / 3600), "hour");
  }
  function relTimes() {
    var times = document.querySelectorAll("#timeline h3 time, #last");
    for (var i = 0; i < times.length; i++) {
      var t = times[i], r = t.nextElementSibling;
      if (!r || r.className !== "rel") { r = el("span", "rel"); t.after(r); }
      var a = ago(new Date(t.dateTime));
      r.textContent = a ? (zh ? "（" + a + "）" : " (" + a + ")") : "";
    }
    countdown();
  }
  function countdown() {
    var o = $("overdue"), due = $("due");
    if (!o) return;
    if (!C.due || C.status !== "active") { o.hidden = true; return; }
    var mins = Math.floor((Date.now() - new Date(C.due).getTime()) / 6e4);
    o.hidden = mins < 0;
    if (mins >= 0) o.textContent = fmt(S.overdue, { minutes: Math.max(mins, 1) });
    if (due) {
      due.dateTime = iso8(new Date(C.due));
      due.textContent = tf.format(new Date(C.due));
      var r = due.nextElementSibling;
      if (!r || r.className !== "rel") { r = el("span", "rel"); due.after(r); }
      r.textContent = mins < 0 && rtf ? (zh ? "（" : " (") + rtf.format(-mins, "minute") + (zh ? "）" : ")") : "";
    }
  }

  function link(href, text) { var a = el("a", null, text); a.href = href; return a; }
  function shareButton(article) {
    var f = article.querySelector("footer");
    if (!f || f.querySelector("button")) return;
    var b = el("button", null, S.copy_link);
    b.type = "button";
    b.addEventListener("click", function () {
      var url = location.origin + C.base + "/entries/" + article.dataset.seq;
      if (navigator.share) { navigator.share({ url: url }).catch(function () {}); return; }
      if (navigator.clipboard) navigator.clipboard.writeText(url).then(function () { say(S.copied); });
    });
    f.append(" ", b);
  }
  function build(e) {
    var a = el("article", "entry k-" + e.kind), d = new Date(e.posted_at);
    a.id = "e" + e.seq;
    a.dataset.seq = e.seq;
    var h = el("header"), h3 = el("h3"), tm = el("time", null, when(d));
    h.append(el("span", "kind", L.kinds[e.kind] || e.kind));
    if (e.kind === "status" && e.status) h.append(" ", el("span", "tag", S["status." + e.status]));
    h3.tabIndex = -1;
    tm.dateTime = iso8(d);
    var pl = link(C.base + "/entries/" + e.seq + C.q, "");
    pl.append(tm);
    h3.append(pl);
    var au = e.author || {}, ap = e.approved_by;
    var meta = [au.department, au.name].filter(Boolean).join(" · ");
    if (ap) meta += " · " + fmt(S.approved_by, { name: [ap.department, ap.name].filter(Boolean).join(" ") });
    h.append(h3, el("p", "meta", meta));
    a.append(h);
    if (e.corrects) { var c = el("p", "note"); c.append(link("#e" + e.corrects, fmt(S.corrects, { seq: e.corrects }))); a.append(c); }
    if (e.redacts) { var r = el("p", "note"); r.append(link("#e" + e.redacts, fmt(S.redacts, { seq: e.redacts }))); a.append(r); }
    var body = el("div", "body");
    body.innerHTML = e.html; // sanitised on the server (markdown-it + nh3 allowlist)
    a.append(body);
    if (e.figures && !e.redacted) {
      var dl = el("dl", "efigs");
      Object.keys(e.figures).forEach(function (k) {
        var w = el("div");
        w.append(el("dt", null, L.figs[k] || k.replace(/^x-/, "")), el("dd", null, nf.format(e.figures[k])));
        dl.append(w);
      });
      a.append(dl);
    }
    var f = el("footer");
    f.append(link("#e" + e.seq, "#" + e.seq));
    a.append(f);
    shareButton(a);
    return a;
  }

  function applyEffects(e) {
    var d = new Date(e.posted_at), lastEl = $("last");
    if (lastEl) { lastEl.dateTime = iso8(d); lastEl.textContent = when(d); }
    if (e.update_interval_minutes) C.interval = e.update_interval_minutes;
    if (e.status) setStatus(e.status);
    C.due = C.interval && C.status === "active" ? new Date(d.getTime() + C.interval * 6e4).toISOString() : null;
    var target = e.corrects && $("e" + e.corrects);
    if (target) {
      target.classList.add("is-corrected");
      var n = el("p", "note corr", fmt(S.corrected_at, { time: when(d) }) + " → ");
      n.append(link("#e" + e.seq, S.see_correction));
      target.insertBefore(n, target.querySelector("footer"));
    }
    if (e.redacts) {
      fetch("/api/incidents/" + encodeURIComponent(C.id) + "/entries/" + e.redacts)
        .then(function (r) { return r.json(); })
        .then(function (x) { withdraw(x); });
    }
    if (e.figures && !e.redacted) {
      Object.keys(e.figures).forEach(function (k) {
        var box = $("fig-" + k);
        if (!box) return;
        var num = box.querySelector(".num"), old = parseInt(num.textContent.replace(/\D/g, ""), 10);
        num.textContent = nf.format(e.figures[k]);
        var dl = box.querySelector(".delta"), diff = e.figures[k] - old;
        if (dl && !isNaN(diff)) dl.textContent = diff ? (diff > 0 ? "+" : "−") + nf.format(Math.abs(diff)) : "";
        box.querySelector(".asof").textContent = zh ? "截至 " + tf.format(d) : "as of " + tf.format(d);
      });
    }
    countdown();
  }
  function setStatus(status) {
    C.status = status;
    var tag = $("tag");
    if (tag) {
      tag.textContent = L.sev[C.severity] + " · " + S["status." + status];
      tag.classList.toggle("resolved", status === "resolved");
    }
  }

  function got(e) {
    if (e.seq <= last) return; // duplicate after a resume
    last = e.seq;
    asOf = new Date();
    applyEffects(e);
    var a = build(e);
    a.hidden = true;
    var empty = $("empty");
    if (empty) empty.remove();
    if (C.asc) tl.append(a); else tl.prepend(a);
    pending.push(a);
    decide();
  }
  function topInView() {
    var r = tl.getBoundingClientRect();
    return r.top >= -40 && r.top < window.innerHeight;
  }
  function decide() {
    if (!pending.length || paused) return;
    if (document.visibilityState === "visible" && (C.asc || topInView())) { reveal(false); return; }
    toast.textContent = fmt(S.new_entries, { n: pending.length });
    toast.hidden = false;
    document.title = "(" + pending.length + ") " + title;
    say(fmt(S.new_entries, { n: pending.length }));
  }
  function reveal(focus) {
    var n = pending.length, newest = pending[pending.length - 1];
    pending.forEach(function (a) { a.hidden = false; a.classList.add("fresh"); });
    pending = [];
    toast.hidden = true;
    document.title = title;
    relTimes();
    if (!focus) { say(fmt(S.new_entries, { n: n })); return; }
    newest.scrollIntoView({ block: "start" });
    newest.querySelector("h3").focus();
  }
  function say(text) { state.textContent = text; }

  function open() {
    clearTimeout(timer);
    if (paused || asleep || ws || es) return;
    var path = "/incidents/" + encodeURIComponent(C.id);
    if (useSse) {
      var up = false;
      es = new EventSource("/api" + path + "/events?after=" + last);
      es.addEventListener("entry", function (ev) { got(JSON.parse(ev.data)); });
      es.onopen = function () { up = true; connected(); };
      es.onerror = function () {
        es.close();
        es = null;
        if (!up && "WebSocket" in window) { useSse = false; wsFails = 0; } // both down: alternate
        lost();
      };
      return;
    }
    var opened = false;
    ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws" + path + "?after=" + last);
    ws.onopen = function () { opened = true; wsFails = 0; connected(); };
    ws.onmessage = function (ev) {
      var m = JSON.parse(ev.data);
      if (m.type === "entry") got(m.entry);
      else if (m.type === "hello" && m.incident) {
        if (m.incident.status !== C.status) setStatus(m.incident.status);
        C.due = m.incident.next_update_due;
        countdown();
      }
    };
    ws.onclose = function () {
      ws = null;
      if (!opened && ++wsFails >= 2) useSse = true; // a proxy that blocks WebSocket
      lost();
    };
  }
  function connected() { retry = 0; if (state.dataset.lost) { delete state.dataset.lost; say(""); } }
  function lost() {
    if (paused || asleep) return;
    state.dataset.lost = "1";
    say(fmt(S.reconnecting, { time: tf.format(asOf) }));
    var d = Math.min(30000, 1000 * Math.pow(2, retry++));
    timer = setTimeout(open, d / 2 + Math.random() * d / 2); // full jitter on half the delay
  }
  function close() {
    clearTimeout(timer);
    if (ws) { ws.onclose = null; ws.close(); ws = null; }
    if (es) { es.close(); es = null; }
    asOf = new Date();
  }
  function setPaused(p) {
    paused = p;
    try { localStorage.setItem("bc-paused", p ? "1" : "0"); } catch (x) { /* private mode */ }
    pauseBtn.textContent = p ? S.resume : S.pause;
    pauseBtn.setAttribute("aria-pressed", p ? "true" : "false");
    if (p) close(); else { open(); decide(); }
  }

  toast.addEventListener("click", function () { reveal(true); });
  document.addEventListener("visibilitychange", function () {
    clearTimeout(hiddenTimer);
    if (document.visibilityState === "hidden") {
      hiddenTimer = setTimeout(function () { asleep = true; close(); }, 3e5);
    } else {
      if (asleep) { asleep = false; open(); }
      decide();
    }
  });
  var ticking = false;
  window.addEventListener("scroll", function () {
    if (ticking || !pending.length) return;
    ticking = true;
    requestAnimationFrame(function () { ticking = false; if (!C.asc && topInView() && !paused) reveal(false); });
  }, { passive: true });

  var arts = tl.querySelectorAll("article");
  for (var i = 0; i < arts.length; i++) shareButton(arts[i]);
  var vb = $("verify-btn");
  if (vb) {
    vb.hidden = false;
    vb.addEventListener("click", function () {
      if (window.bcVerify) { window.bcVerify(C, $("verify-result"), vb); return; }
      var s = document.createElement("script");
      s.src = vb.dataset.src;
      s.onload = function () { window.bcVerify(C, $("verify-result"), vb); };
      document.head.append(s);
    });
    if (location.hash === "#verify") vb.click();
  }
  relTimes();
  setInterval(relTimes, 6e4);
  if (C.live) {
    pauseBtn.hidden = false;
    pauseBtn.addEventListener("click", function () { setPaused(!paused); });
    setPaused(paused);
  }
})();
