/* Index: one polite status line "N 个事件有新动态 · 刷新" when listed incidents get new
   entries; nothing else changes (UI brief §4). Polls /api/incidents each 60 s rather than
   an SSE/WebSocket per incident: the index promises nothing live, and ten held streams per
   reader cost ten server connections and, over HTTP/1.1, the browser's six per host.
   cache "no-cache" revalidates with If-None-Match when the API sends an ETag. */
(function () {
  "use strict";
  var cfgEl = document.getElementById("index-config");
  if (!cfgEl || !window.fetch) return;
  var C = JSON.parse(cfgEl.textContent), heads = C.heads, zh = C.lang !== "en";
  var line, shown = 0, busy = false;
  if (!Object.keys(heads).length && !C.source) return;
  var h1 = document.querySelector("main h1");
  line = document.createElement("p");
  line.className = "hint";
  line.setAttribute("role", "status");
  h1.after(line);

  function say(n) {
    if (n === shown) return;
    shown = n;
    var a = document.createElement("a");
    a.href = location.pathname + location.search;
    a.textContent = zh ? "刷新" : "Refresh";
    line.textContent = zh ? n + " 个事件有新动态 · "
      : n + (n === 1 ? " incident has" : " incidents have") + " new updates · ";
    line.append(a);
  }
  function poll() {
    if (busy || document.hidden) return;
    busy = true;
    fetch(C.source || "/api/incidents", { cache: "no-cache", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (d) {
        if (!d) return;
        var n = 0;
        d.incidents.forEach(function (i) {
          // An area page (C.source) also counts incidents new to the area.
          if (i.id in heads ? i.head && i.head.seq > heads[i.id] : C.source) n++;
        });
        say(n);
      })
      .catch(function () { /* offline: try again next minute */ })
      .then(function () { busy = false; });
  }
  setInterval(poll, 60000);
  document.addEventListener("visibilitychange", function () { if (!document.hidden) poll(); });
})();
