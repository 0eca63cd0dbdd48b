// hushmetric dashboard: the only script. Every page is complete without it; this refreshes <main>
// in place every data-refresh seconds while the tab is visible (same-origin fetch, cookie auth).
"use strict";
(function () {
  const main = document.querySelector("main[data-refresh]");
  if (!main) return;
  const seconds = Number(main.dataset.refresh) || 30;
  async function refresh() {
    if (document.hidden) return;
    const active = document.activeElement;
    if (active && active.tagName === "INPUT" && main.contains(active)) return; // someone is typing
    try {
      const res = await fetch(window.location.href, { credentials: "same-origin", cache: "no-store" });
      if (res.status === 401) { window.location.assign("/login"); return; }
      if (!res.ok) return;
      const doc = new DOMParser().parseFromString(await res.text(), "text/html");
      const fresh = doc.querySelector("main");
      if (fresh) main.replaceChildren(...Array.from(fresh.childNodes));
    } catch (e) {
      // the collector restarting or the network gone: try again at the next tick
    }
  }
  window.setInterval(refresh, seconds * 1000);
})();
