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
  function withdraw(x, notice) {
    var gone = $("e" + x.seq);
    if (gone) {
      var b = gone.querySelector(".body");
      b.textContent = "";
      b.removeAttribute("lang");
      b.append(el("p", "redaction-notice", notice));
      var figs = gone.querySelector(".efigs");
      if (figs) figs.remove();
      gone.classList.add("is-redacted");
    }
    document.querySelectorAll('.keys a[href$="#e' + x.seq + '"]').forEach(function (a) {
      var t = a.querySelector("time");
      a.textContent = "";
      if (t) a.append(t, " ");
      a.append(keyLine(L.kinds[x.kind] || x.kind, S.withheld));
    });
  }
  function cut(t) { return t.length > 40 ? t.slice(0, 39) + "…" : t; }
  function keyLine(kind, text) { var s = el("span", null, cut(kind + "：" + text)); if (C.cl) s.lang = C.cl; return s; }
  function isKey(e) {
    var pinsOnly = e.kind === "status" && ["status", "severity", "advice", "summary", "area", "update_interval_minutes"].every(function (k) { return e[k] == null; });
    return e.seq === 1 || (e.kind === "status" && !pinsOnly) || e.kind === "correction" || e.kind === "redaction" || !!e.figures;
  }
  function keyItem(e, pinned) {
    var li = el("li"), a = link("#e" + e.seq, ""), d = new Date(e.posted_at), t = el("time", null, when(d)), tmp = el("div");
    tmp.innerHTML = e.html;
    var text = e.redacted ? S.withheld : tmp.textContent.trim();
    li.dataset.seq = e.seq;
    t.dateTime = iso8(d);
    a.append(t, " ");
    if (pinned) a.append(el("span", "pin", S.pinned), " ");
    a.append(keyLine(L.kinds[e.kind] || e.kind, text || "#" + e.seq));
    li.append(a);
    return li;
  }
  // Key events stay current: pinned ones first (the editors' order), then the newest by rule.
  function keys(e) {
    var ul = $("keys");
    if (!ul) return;
    if (e.pinned) {
      C.pinned = e.pinned;
      Promise.all(e.pinned.map(function (n) {
        return fetch("/api/incidents/" + encodeURIComponent(C.id) + "/entries/" + n).then(function (r) { return r.json(); });
      })).then(function (list) {
        ul.querySelectorAll("li").forEach(function (li) { if (li.querySelector(".pin")) li.remove(); });
        list.reverse().forEach(function (x) { var old = ul.querySelector('li[data-seq="' + x.seq + '"]'); if (old) old.remove(); ul.prepend(keyItem(x, true)); });
        trim(ul);
      });
    }
    if (!isKey(e) || C.pinned.indexOf(e.seq) >= 0) return;
    var first = null;
    ul.querySelectorAll("li").forEach(function (li) { if (!first && !li.querySelector(".pin")) first = li; });
    ul.insertBefore(keyItem(e, false), first);
    trim(ul);
    ul.closest("section").hidden = false;
  }
  function trim(ul) { var li = ul.querySelectorAll("li"); for (var i = 8; i < li.length; i++) li[i].remove(); }
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
    var times = document.querySelectorAll("#timeline h3 time, #last, #keys time");
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
    if (e.kind === "status") {
      var ch = el("dl", "changes"), G = L.chg;
      [["severity", G.level, L.sev[e.severity]], ["status", G.status, S["status." + e.status]], ["advice", G.advice, e.advice], ["area", G.area, e.area],
        ["summary", G.summary, e.summary != null && G.summary_changed], ["update_interval_minutes", G.interval, e.update_interval_minutes]].forEach(function (r) {
        if (e[r[0]] == null) return;
        var w = el("div"), dd = el("dd", null, r[2] || "—");
        if (C.cl && (r[0] === "advice" || r[0] === "area")) dd.lang = C.cl;
        w.append(el("dt", null, r[1]), dd);
        ch.append(w);
      });
      a.append(ch);
    }
    var body = el("div", "body");
    if (C.cl && !e.redacted) body.lang = C.cl;
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
    if (e.severity) C.severity = e.severity;
    if (e.status || e.severity) setStatus(e.status || C.status);
    if (e.advice != null) setText("nowdo", e.advice);
    if (e.area != null) setText("area", e.area);
    if (e.summary != null) { var sm = document.querySelector(".summary .body"); if (sm) { sm.textContent = ""; sm.append(el("p", "note", L.chg.summary_changed + " · "), link(location.pathname + location.search, S.refresh)); } }
    if (e.kind === "answer") answered(e);
    keys(e);
    C.due = C.interval && C.status === "active" ? new Date(d.getTime() + C.interval * 6e4).toISOString() : null;
    var target = e.corrects && $("e" + e.corrects);
    if (target) {
      target.classList.add("is-corrected");
      if (!target.querySelector(".corr-mark")) target.querySelector("header h3").before(el("span", "corr-mark", S.corrected), " ");
      document.querySelectorAll('#keys li[data-seq="' + e.corrects + '"] a').forEach(function (a) { if (!a.querySelector(".corr-mark")) a.querySelector("time").after(" ", el("span", "corr-mark", S.corrected)); });
      var n = el("p", "note corr", fmt(S.corrected_at, { time: when(d) }) + " → ");
      n.append(link("#e" + e.seq, S.see_correction));
      target.insertBefore(n, target.querySelector("footer"));
    }
    if (e.redacts) {
      fetch("/api/incidents/" + encodeURIComponent(C.id) + "/entries/" + e.redacts)
        .then(function (r) { return r.json(); })
        .then(function (x) { var n = el("div"); n.innerHTML = x.html; withdraw(x, zh ? n.textContent.trim() : S.withheld); });
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
    relTimes(); // the header's "(5分钟前)" must follow the new time at once
  }
  function setStatus(status) {
    C.status = status;
    var tag = $("tag");
    if (tag) {
      tag.textContent = L.sev[C.severity] + " · " + S["status." + status];
      tag.className = "sev sev-" + C.severity + (status === "resolved" ? " resolved" : "");
    }
    // Advice is what to do now: an incident that is over gives none.
    var nd = $("nowdo");
    if (nd) nd.hidden = status === "resolved";
    if (status === "resolved" && !$("over")) { var o = el("p", "over", fmt(S.resolved_note, { time: tf.format(new Date()) })); o.id = "over"; tag.parentNode.after(o); }
    if (status === "active" && $("over")) $("over").remove();
  }
  function setText(id, text) {
    var n = $(id);
    if (!n && id === "nowdo") { n = el("span", "nowdo"); n.id = id; if (C.cl) n.lang = C.cl; $("tag").after(" ", n); }
    if (n) { n.textContent = text; n.hidden = !text || (id === "nowdo" && C.status === "resolved"); }
  }
  function answered(e) {
    var ul = $("answers"), q = el("div");
    q.innerHTML = e.html;
    var bq = q.querySelector("blockquote");
    if (!ul || !bq) return;
    var none = $("no-answers"), li = el("li"), p = el("p", null, bq.textContent.trim()), m = el("p", "meta");
    if (none) none.remove();
    if (C.cl) p.lang = C.cl;
    m.append(link("#e" + e.seq, S.see_answer + " #" + e.seq));
    li.append(p, m);
    ul.prepend(li);
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
