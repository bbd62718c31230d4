/* Console: the two-person review queue ("待审核"), mounted in section[data-mount=drafts].
   Reviewers see every draft with its preview, author and privacy findings, and approve or
   return it; nobody gets an approve button on their own draft (the server refuses it too).
   Editors see their own drafts' fate. The token is console.js's, from sessionStorage. */
(function () {
  "use strict";
  var mount = document.querySelector("[data-mount=drafts]");
  var main = document.querySelector("[data-console]");
  if (!mount || !main) return;
  var en = main.dataset.console === "en";
  var T = en ? {
    refresh: "Refresh", none: "No drafts.", count: "{n} awaiting review", pending: "Awaiting review",
    approved: "Published", rejected: "Returned", by: "By {name} ({dept}), {time}",
    approve: "Approve and publish", reject: "Return", reason: "Why it is returned (required)",
    needReason: "Give the reason", own: "Your draft: another reviewer must approve it.",
    wait: "Waiting for a reviewer.", approvedBy: "Approved by {name} ({dept}), {time}: ",
    rejectedBy: "Returned by {name} ({dept}), {time}: {reason}", masked: "masked",
    acknowledged: "published as written: {reason}", findings: "Personal information found",
    entry: "entry #{seq}", failed: "Could not reach the server. Try again.", incident: "New incident: {title} · {sev}",
    change: "Status change: {what}", sev: { extreme: "Level I", severe: "Level II", moderate: "Level III", minor: "Level IV" },
    codes: { resident_id: "ID number", mobile: "Mobile number", bank_card: "Bank card", email: "E-mail", vehicle_plate: "Vehicle plate" }
  } : {
    refresh: "刷新", none: "暂无草稿。", count: "{n} 条待审核", pending: "待审核",
    approved: "已发布", rejected: "已退回", by: "提交人：{name}（{dept}），{time}",
    approve: "批准发布", reject: "退回", reason: "退回理由（必填）", needReason: "请填写退回理由",
    own: "这是您提交的草稿，须由另一位审核人批准。", wait: "等待审核人批准。",
    approvedBy: "{name}（{dept}）于 {time} 批准发布：", rejectedBy: "{name}（{dept}）于 {time} 退回：{reason}",
    masked: "已打码", acknowledged: "按原文发布，理由：{reason}", findings: "发现的个人信息",
    entry: "第{seq}条", failed: "无法连接服务器，请重试。", incident: "新建事件：{title} · {sev}",
    change: "状态变更：{what}", sev: { extreme: "一级", severe: "二级", moderate: "三级", minor: "四级" },
    codes: { resident_id: "身份证号", mobile: "手机号码", bank_card: "银行卡号", email: "电子邮箱", vehicle_plate: "车牌号" }
  };
  var LABEL = { pending: T.pending, approved: T.approved, rejected: T.rejected };
  var when = new Intl.DateTimeFormat(en ? "en-GB" : "zh-CN", {
    month: "numeric", day: "numeric", hour: "2-digit", minute: "2-digit", hour12: false, timeZone: "Asia/Shanghai"
  });
  function fmt(s, o) { return s.replace(/\{(\w+)\}/g, function (m, k) { return o[k] == null ? "" : o[k]; }); }
  function el(tag, text, cls) {
    var n = document.createElement(tag);
    if (text != null) n.textContent = text;
    if (cls) n.className = cls;
    return n;
  }
  function api(method, path, body) {
    var h = { Authorization: "Bearer " + sessionStorage.getItem("bc-token") };
    if (body !== undefined) h["Content-Type"] = "application/json";
    return fetch(path, { method: method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) })
      .then(function (r) { return r.json().catch(function () { return {}; }).then(function (j) { return { status: r.status, body: j }; }); });
  }

  var bar = el("p"), refresh = el("button", T.refresh, "btn2"), status = el("span");
  refresh.type = "button";
  status.setAttribute("role", "status");
  bar.append(refresh, " ", status);
  var list = el("div");
  list.id = "draft-list";
  mount.append(bar, list);

  function person(p, time) { return { name: p.name, dept: p.department, time: time ? when.format(new Date(time)) : "" }; }

  function findings(draft) {
    if (!draft.findings.length) return null;
    var box = el("div"), ul = el("ul", null, "findings");
    box.append(el("p", T.findings, "hint"), ul);
    draft.findings.forEach(function (f) {
      var how = f.resolution === "masked" ? T.masked : fmt(T.acknowledged, { reason: (draft.acknowledgement || {}).reason });
      ul.append(el("li", (T.codes[f.code] || f.code) + " " + f.excerpt + "：" + how));
    });
    return box;
  }

  function wrap(tag, child) { var n = el(tag); n.append(child); return n; }

  function decide(card, draft) {
    var actions = el("div"), approve = el("button", T.approve, "btn"), field = el("div", null, "field");
    var id = "reason-" + draft.id, label = el("label", T.reason), reason = el("textarea"), reject = el("button", T.reject, "btn2");
    var problem = el("p", null, "err");
    problem.setAttribute("role", "alert");
    problem.hidden = true;
    approve.type = reject.type = "button";
    label.htmlFor = reason.id = id;
    reason.rows = 2;
    field.append(label, reason);
    actions.append(problem, wrap("p", approve), field, wrap("p", reject));
    function send(button, path, body) {
      button.disabled = true;
      problem.hidden = true;
      api("POST", path, body).then(function (r) {
        if (r.status === 200 || r.status === 201) { load(); return; }
        problem.textContent = r.body.message || ("HTTP " + r.status);
        problem.hidden = false;
        button.disabled = false;
      }, function () { problem.textContent = T.failed; problem.hidden = false; button.disabled = false; });
    }
    approve.addEventListener("click", function () { send(approve, "/api/drafts/" + encodeURIComponent(draft.id) + "/approve"); });
    reject.addEventListener("click", function () {
      if (!reason.value.trim()) { problem.textContent = T.needReason; problem.hidden = false; reason.focus(); return; }
      send(reject, "/api/drafts/" + encodeURIComponent(draft.id) + "/reject", { reason: reason.value.trim() });
    });
    card.append(actions);
  }

  function card(draft, titles, viewer) {
    var art = el("article", null, "panel draft");
    art.id = "draft-" + draft.id;
    art.dataset.status = draft.status;
    var h = el("h3"), tag = el("strong", "【" + LABEL[draft.status] + "】");
    h.append(tag, " " + (titles[draft.incident] || draft.incident));
    art.append(h, el("p", fmt(T.by, person(draft.author, draft.created_at)), "hint"));
    var preview = el("div", null, "timeline"), entry = el("article", null, "entry"), body = el("div", null, "body"), e = draft.entry;
    // Incident text and state changes are public too: the reviewer sees every field that will be.
    if (e.kind === "incident") entry.append(el("p", fmt(T.incident, { title: e.title, sev: T.sev[e.severity] }), "kind"));
    if (e.kind === "status") entry.append(el("p", fmt(T.change, { what: ["status", "severity", "advice", "area", "update_interval_minutes", "pinned"].filter(function (k) { return e[k] != null; }).map(function (k) { return k + "=" + (k === "severity" ? T.sev[e[k]] : e[k]); }).join("，") }), "kind"));
    if (e.kind === "incident" && e.advice) entry.append(el("p", e.advice, "nowdo"));
    body.innerHTML = e.html; // rendered and sanitised by the server, as it will be published
    entry.append(body);
    preview.append(entry);
    art.append(preview);
    var found = findings(draft);
    if (found) art.append(found);
    if (draft.status === "approved") {
      var done = el("p", fmt(T.approvedBy, person(draft.decided_by, draft.decided_at))), link = el("a", draft.published.seq ? fmt(T.entry, draft.published) : draft.entry.title);
      link.href = draft.published.url;
      done.append(link);
      art.append(done);
    } else if (draft.status === "rejected") {
      art.append(el("p", fmt(T.rejectedBy, Object.assign(person(draft.decided_by, draft.decided_at), { reason: draft.reason })), "err"));
    } else if (draft.mine) {
      art.append(el("p", T.own, "hint"));
    } else if (viewer.role === "editor") {
      art.append(el("p", T.wait, "hint"));
    } else {
      decide(art, draft);
    }
    return art;
  }

  var loading = null;
  function load() {
    if (!sessionStorage.getItem("bc-token")) return null;
    if (loading) return loading;
    loading = Promise.all([
      api("GET", "/api/drafts?status=pending&limit=200"), // oldest first: a queue
      api("GET", "/api/drafts?status=all&limit=30"), // newest first: recent decisions
      fetch("/api/incidents").then(function (r) { return r.json(); })
    ]).then(function (got) {
      var queue = got[0], recent = got[1], titles = {};
      (got[2].incidents || []).forEach(function (i) { titles[i.id] = i.title; });
      list.textContent = "";
      if (queue.status !== 200) { status.textContent = queue.body.message || ("HTTP " + queue.status); return; }
      var pending = queue.body.drafts;
      var decided = (recent.body.drafts || []).filter(function (d) { return d.status !== "pending"; });
      pending.concat(decided).forEach(function (d) { list.append(card(d, titles, queue.body.viewer)); });
      status.textContent = pending.length || decided.length ? fmt(T.count, { n: pending.length }) : T.none;
    }, function () { status.textContent = T.failed; }).then(function () { loading = null; });
    return loading;
  }

  refresh.addEventListener("click", load);
  // console.js owns sign-in and publishing: reload when the work area appears or a post lands.
  // Not the subtree of #work: this list lives there and would wake the observer itself.
  var work = document.getElementById("work"), done = document.getElementById("done");
  var watch = new MutationObserver(function () { if (!work.hidden) load(); });
  watch.observe(work, { attributes: true, attributeFilter: ["hidden"] });
  if (done) watch.observe(done, { attributes: true, attributeFilter: ["hidden"], childList: true, subtree: true, characterData: true });
  if (!work.hidden) load();
})();
