/* Press office console: token in sessionStorage only; write, check, publish.
   Every publish sends an Idempotency-Key and disables its button until answered. */
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
  var main = document.querySelector("[data-console]");
  if (!main) return;
  var en = main.dataset.console === "en";
  var T = en ? {
    signedIn: "Signed in", badToken: "The token was not accepted", needBody: "Enter the text",
    needCorrects: "Give the number of the entry this corrects", needTitle: "Enter a title",
    needReason: "Give the reason", badNumber: "Must be a whole number", kind: "Kind", incident: "Incident",
    channels: "Channels", web: "web page, feeds, CAP, webhooks", sms: "SMS, {n} part(s) per subscriber",
    figures: "Figures", published: "Published #{seq}: ", draft: "Held for review (draft {id})",
    created: "Incident created: ", dueIn: "Next update due by {t} ({m} min left)",
    late: "The promised update is {m} min late", noDue: "No update interval promised",
    current: "now {v}", smsCount: "{n} characters with signature, title, link and stop hint: {p} SMS part(s) of at most {m}",
    smsOver: "The SMS would need {p} parts, more than {m}: shorten the text by {o} characters or untick SMS",
    smsRow: "SMS ({p} part(s)): {text}", needSeverity: "Choose a level", needChange: "Fill in at least one change",
    incidentDraft: "Incident held for review (draft {id}): public once approved", badPinned: "Entry numbers separated by commas",
    failed: "Could not reach the server; nothing was published. Try again.", findings: "{code}: {excerpt}"
  } : {
    signedIn: "已登录", badToken: "令牌无效或权限不足", needBody: "请填写正文",
    needCorrects: "请填写所更正动态的序号", needTitle: "请填写标题", needReason: "请说明理由",
    badNumber: "须为非负整数", kind: "类型", incident: "事件", channels: "渠道",
    web: "网页、订阅源、CAP、Webhook", sms: "短信，每位订阅者 {n} 条", figures: "关键数字",
    published: "已发布 #{seq}：", draft: "已提交审核（草稿 {id}）", created: "已新建事件：",
    dueIn: "下次更新应于 {t} 前（还剩 {m} 分钟）", late: "已超过承诺更新时间 {m} 分钟",
    noDue: "未承诺更新间隔", current: "当前 {v}", smsCount: "含签名、标题、链接和退订提示共 {n} 字，{p} 条短信（上限 {m} 条）",
    smsOver: "短信需要 {p} 条，超过上限 {m} 条：请删减 {o} 字，或不发送短信", smsRow: "短信（{p} 条）：{text}",
    needSeverity: "请选择级别", needChange: "请至少填写一项变更", badPinned: "请填写以逗号分隔的序号",
    incidentDraft: "事件已提交审核（草稿 {id}），批准后公开",
    failed: "无法连接服务器，未发布。请重试。", findings: "{code}：{excerpt}"
  };
  function fmt(s, o) { return s.replace(/\{(\w+)\}/g, function (m, k) { return o[k]; }); }
  var token = sessionStorage.getItem("bc-token");
  var incidents = [], current = {}, pendingBody = null, pendingKey = null;
  var tf = new Intl.DateTimeFormat(en ? "en" : "zh-CN", { hour: "2-digit", minute: "2-digit", hour12: false, timeZone: "Asia/Shanghai" });

  function api(method, path, body, headers) {
    var h = Object.assign({ Authorization: "Bearer " + token }, headers || {});
    if (body !== undefined) h["Content-Type"] = "application/json";
    return fetch(path, { method: method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) })
      .then(function (r) { return r.json().catch(function () { return {}; }).then(function (j) { return { status: r.status, body: j }; }); });
  }
  function el(tag, text) { var n = document.createElement(tag); if (text != null) n.textContent = text; return n; }
  function errors(list) { // [{field, message}] -> error summary + per-field messages
    var box = $("errors"), ul = box.querySelector("ul");
    ul.textContent = "";
    document.querySelectorAll(".field-err").forEach(function (n) { n.remove(); });
    document.querySelectorAll(".has-err").forEach(function (n) { n.classList.remove("has-err"); });
    box.hidden = !list.length;
    list.forEach(function (e) {
      var li = el("li"), target = e.field && fieldEl(e.field);
      if (target) {
        var a = el("a", e.message);
        a.href = "#" + target.id;
        li.append(a);
        var wrap = target.closest(".field");
        if (wrap) { wrap.classList.add("has-err"); var m = el("p", e.message); m.className = "err field-err"; wrap.insertBefore(m, wrap.querySelector("input,textarea,select,div")); }
      } else li.textContent = e.message;
      ul.append(li);
    });
    if (list.length) box.focus();
  }
  function fieldEl(name) {
    if (name.indexOf("figures.") === 0) return $("fig-" + name.slice(8));
    if ($("f-status") && !$("f-status").hidden && $("s-" + name)) return $("s-" + name);
    return $({ update_interval_minutes: "interval", acknowledge: "ack-reason" }[name] || name);
  }
  function fromApi(r) { errors([{ field: r.body.field, message: r.body.message || ("HTTP " + r.status) }]); }
  function banner(text, href, label) {
    var p = $("done-text");
    p.textContent = text;
    if (href) { var a = el("a", label); a.href = href; p.append(a); }
    $("done").hidden = false;
    $("done").focus();
  }
  function key() { return window.crypto && crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2) + Date.now(); }

  function signedIn(ok) {
    $("signin-form").hidden = ok;
    $("whoami").hidden = !ok;
    $("work").hidden = !ok;
    if (ok) { $("whoami").querySelector("span").textContent = T.signedIn; loadIncidents(); }
  }
  $("signin-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    token = $("token").value.trim();
    api("POST", "/api/preview", { body: "" }).then(function (r) {
      if (r.status !== 200) { token = null; errors([{ field: "token", message: T.badToken }]); return; }
      sessionStorage.setItem("bc-token", token);
      $("token").value = "";
      errors([]);
      signedIn(true);
    });
  });
  $("signout").addEventListener("click", function () { sessionStorage.removeItem("bc-token"); token = null; signedIn(false); });

  function loadIncidents(select) {
    return fetch("/api/incidents").then(function (r) { return r.json(); }).then(function (j) {
      incidents = j.incidents;
      var sel = $("incident"), keep = select || sel.value;
      sel.textContent = "";
      incidents.forEach(function (i) {
        var o = el("option", i.title + " · " + i.code + (i.status === "resolved" ? " ✓" : ""));
        o.value = i.id;
        sel.append(o);
      });
      if (keep) sel.value = keep;
      chosen();
    });
  }
  function incident() { var id = $("incident").value; return incidents.filter(function (i) { return i.id === id; })[0]; }
  function chosen() {
    var inc = incident();
    if (!inc) return;
    $("open-live").href = "/incidents/" + encodeURIComponent(inc.id);
    due();
    current = {};
    fetch("/api/incidents/" + encodeURIComponent(inc.id) + "/entries?limit=1000").then(function (r) { return r.json(); }).then(function (j) {
      j.entries.forEach(function (e) { if (e.figures) Object.assign(current, e.figures); });
      document.querySelectorAll("[data-current]").forEach(function (n) {
        var v = current[n.dataset.current];
        n.textContent = v == null ? "" : fmt(T.current, { v: v.toLocaleString() });
      });
    });
  }
  function due() {
    var inc = incident(), line = $("due-line");
    if (!inc) return;
    if (!inc.next_update_due) { line.textContent = T.noDue; return; }
    var d = new Date(inc.next_update_due), m = Math.round((d - Date.now()) / 6e4);
    line.textContent = m >= 0 ? fmt(T.dueIn, { t: tf.format(d), m: m }) : fmt(T.late, { m: -m });
    line.className = m >= 0 ? "when" : "overdue";
  }
  setInterval(due, 6e4);
  $("incident").addEventListener("change", chosen);

  function kind() { return document.querySelector("input[name=kind]:checked").value; }
  function syncKind() {
    $("f-corrects").hidden = kind() !== "correction";
    $("f-status").hidden = kind() !== "status";
  }
  document.querySelectorAll("input[name=kind]").forEach(function (r) { r.addEventListener("change", syncKind); });
  function figures(problems) {
    var out = {}, lowered = false;
    document.querySelectorAll("[data-fig]").forEach(function (input) {
      var v = input.value.trim();
      if (!v) return;
      if (!/^\d+$/.test(v)) { problems.push({ field: "figures." + input.dataset.fig, message: T.badNumber }); return; }
      out[input.dataset.fig] = parseInt(v, 10);
      var was = current[input.dataset.fig];
      if (input.dataset.cumulative && was != null && out[input.dataset.fig] < was) lowered = true;
    });
    $("fig-note").hidden = !lowered;
    if (lowered && kind() !== "correction") { document.querySelector("input[value=correction]").checked = true; syncKind(); }
    return Object.keys(out).length ? out : null;
  }
  document.querySelectorAll("[data-fig]").forEach(function (i) { i.addEventListener("input", function () { figures([]); }); });
  // The SMS is composed by the server with the sender's own code: what is shown is what is sent.
  var smsTimer = 0;
  function smsShow(m) {
    var over = !m.fits;
    $("sms-count").textContent = over ? fmt(T.smsOver, { p: m.segments, m: m.max_segments, o: m.over_by }) : fmt(T.smsCount, { n: m.units, p: m.segments, m: m.max_segments });
    $("sms-count").className = over ? "err" : "hint";
    $("sms-text").textContent = m.text;
    $("sms-box").hidden = false;
  }
  function previewBody(b) {
    var q = { body: b.body, incident: incident() && incident().id, kind: b.kind };
    ["status", "severity", "advice", "area"].forEach(function (k) { if (b[k] != null) q[k] = b[k]; });
    return q;
  }
  function smsCount() {
    clearTimeout(smsTimer);
    if (!$("sms").checked || !incident()) { $("sms-count").textContent = ""; $("sms-box").hidden = true; return; }
    smsTimer = setTimeout(function () {
      api("POST", "/api/preview", previewBody(payload().body)).then(function (r) { if (r.body.sms) smsShow(r.body.sms); });
    }, 400);
  }
  ["body", "s-advice", "s-area"].forEach(function (id) { $(id).addEventListener("input", smsCount); });
  ["sms", "status", "s-severity"].forEach(function (id) { $(id).addEventListener("change", smsCount); });
  $("s-severity").addEventListener("change", function () { // a level change reaches subscribers by default
    var inc = incident();
    $("sms").checked = !!$("s-severity").value && (!inc || inc.severity !== $("s-severity").value);
    smsCount();
  });

  function payload() {
    var problems = [], k = kind(), p = { kind: k, body: $("body").value, sms: $("sms").checked };
    var figs = figures(problems);
    if (figs) p.figures = figs;
    if (k === "correction") {
      if (!/^\d+$/.test($("corrects").value.trim())) problems.push({ field: "corrects", message: T.needCorrects });
      else p.corrects = parseInt($("corrects").value, 10);
    }
    if (k === "status") {
      if ($("status").value) p.status = $("status").value;
      if ($("s-severity").value) p.severity = $("s-severity").value;
      ["advice", "area", "summary"].forEach(function (f) { if ($("s-" + f).value.trim()) p[f] = $("s-" + f).value.trim(); });
      var iv = $("s-interval").value.trim(), pin = $("s-pinned").value.trim();
      if (iv && !/^\d+$/.test(iv)) problems.push({ field: "update_interval_minutes", message: T.badNumber });
      else if (iv) p.update_interval_minutes = parseInt(iv, 10);
      if (pin && !/^\d+(\s*[,，、]\s*\d+)*$/.test(pin)) problems.push({ field: "pinned", message: T.badPinned });
      else if (pin) p.pinned = pin.split(/[,，、]/).map(function (x) { return parseInt(x, 10); });
      if (!["status", "severity", "advice", "area", "summary", "update_interval_minutes", "pinned"].some(function (f) { return p[f] != null; }))
        problems.push({ field: "status", message: T.needChange });
    }
    if (k !== "status" && !p.body.trim()) problems.push({ field: "body", message: T.needBody });
    return { body: p, problems: problems };
  }
  $("post-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var p = payload();
    errors(p.problems);
    if (p.problems.length) return;
    api("POST", "/api/preview", previewBody(p.body)).then(function (r) {
      if (r.status !== 200) { fromApi(r); return; }
      var m = r.body.sms;
      if (p.body.sms && m) {
        smsShow(m);
        if (!m.fits) { errors([{ field: "body", message: fmt(T.smsOver, { p: m.segments, m: m.max_segments, o: m.over_by }) }]); return; }
      }
      pendingBody = p.body;
      pendingKey = key();
      $("preview").innerHTML = r.body.html; // rendered by the server exactly as it will be published
      var dl = $("check-list");
      dl.textContent = "";
      var rows = [[T.kind, document.querySelector("input[name=kind]:checked").parentNode.textContent.trim()], [T.incident, incident().title], [T.channels, T.web + (p.body.sms && m ? "；" + fmt(T.sms, { n: m.segments }) : "")]];
      if (p.body.sms && m) rows.push([T.sms.split(/[，,]/)[0], fmt(T.smsRow, { p: m.segments, text: m.text })]);
      if (p.body.figures) rows.push([T.figures, Object.keys(p.body.figures).map(function (k) { return k + " " + (current[k] == null ? "—" : current[k]) + " → " + p.body.figures[k]; }).join("，")]);
      rows.forEach(function (row) { var d = el("div"); d.append(el("dt", row[0]), el("dd", row[1])); dl.append(d); });
      $("check").hidden = false;
      $("review").hidden = true;
      $("check").focus();
    });
  });
  $("edit").addEventListener("click", function () { $("check").hidden = true; $("body").focus(); });
  function publish(extra, button) {
    var inc = incident(), body = Object.assign({}, pendingBody, extra || {});
    if (extra) pendingKey = key(); // a different request body needs its own key
    button.disabled = true;
    api("POST", "/api/incidents/" + encodeURIComponent(inc.id) + "/entries", body, { "Idempotency-Key": pendingKey })
      .then(function (r) {
        if (r.status === 201 || r.status === 202) {
          errors([]);
          $("check").hidden = $("review").hidden = true;
          $("post-form").reset();
          syncKind();
          if (r.status === 202) banner(fmt(T.draft, { id: r.body.draft_id }));
          else banner(fmt(T.published, { seq: r.body.seq }), "/incidents/" + encodeURIComponent(inc.id) + "/entries/" + r.body.seq, "/incidents/" + inc.id + "/entries/" + r.body.seq);
          loadIncidents(inc.id);
        } else if (r.status === 422 && r.body.error === "disclosure_review") {
          review(r.body.findings || []);
        } else fromApi(r);
      }, function () { errors([{ message: T.failed }]); })
      .then(function () { button.disabled = false; });
  }
  function review(findings) {
    var ul = $("findings");
    ul.textContent = "";
    findings.forEach(function (f) { ul.append(el("li", fmt(T.findings, { code: f.code, excerpt: f.excerpt }))); });
    $("review").dataset.codes = JSON.stringify(findings.map(function (f) { return f.code; }).filter(function (c, i, a) { return a.indexOf(c) === i; }));
    $("check").hidden = true;
    $("review").hidden = false;
    $("review").focus();
  }
  $("publish").addEventListener("click", function () { publish(null, $("publish")); });
  $("mask").addEventListener("click", function () { publish({ mask: true }, $("mask")); });
  $("ack").addEventListener("click", function () {
    var reason = $("ack-reason").value.trim();
    if (!reason) { errors([{ field: "ack-reason", message: T.needReason }]); return; }
    publish({ acknowledge: { codes: JSON.parse($("review").dataset.codes), reason: reason } }, $("ack"));
  });

  $("new-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    var body = { title: $("title").value.trim(), severity: $("severity").value }, problems = [];
    if (!body.title) problems.push({ field: "title", message: T.needTitle });
    if (!body.severity) problems.push({ field: "severity", message: T.needSeverity }); // no default: a hurried editor must choose
    if ($("advice").value.trim()) body.advice = $("advice").value.trim();
    if ($("area").value.trim()) body.area = $("area").value.trim();
    if ($("summary").value.trim()) body.summary = $("summary").value;
    var iv = $("interval").value.trim();
    if (iv && !/^\d+$/.test(iv)) problems.push({ field: "update_interval_minutes", message: T.badNumber });
    else if (iv) body.update_interval_minutes = parseInt(iv, 10);
    errors(problems);
    if (problems.length) return;
    var b = ev.submitter || $("new-form").querySelector("button");
    b.disabled = true;
    api("POST", "/api/incidents", body).then(function (r) {
      if (r.status === 202) { errors([]); $("new-form").reset(); banner(fmt(T.incidentDraft, { id: r.body.draft_id })); return; }
      if (r.status !== 201) { fromApi(r); return; }
      errors([]);
      $("new-form").reset();
      banner(T.created, "/incidents/" + encodeURIComponent(r.body.id), r.body.title);
      return loadIncidents(r.body.id);
    }).then(function () { b.disabled = false; });
  });
  syncKind();
  $("signin").hidden = false; // shown only once this script can handle it: no token in a URL
  signedIn(!!token);
})();
