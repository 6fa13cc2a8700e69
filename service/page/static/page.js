// Signpost's page refreshes itself: every 1.5 s it asks each set's posterior whether it
// changed (If-None-Match: 304 while it has not), and when a new fit is published it fetches
// this page again and swaps the content in, keeping focus, open <details> and the scroll
// position, and says what changed in the aria-live region. Without JavaScript the page shows
// everything; reload it to update.
(() => {
  "use strict";
  const POLL_MS = 1500;
  const seen = new Map(); // set id -> {etag, fitId} of the posterior last served
  let busy = false;

  function blocks() {
    return Array.from(document.querySelectorAll("[data-poll-set]"));
  }

  // Whether the set shown in `block` has a newer published fit than the one shown.
  async function changed(block) {
    const id = block.dataset.pollSet;
    const shown = block.dataset.fitId || "";
    const last = seen.get(id);
    const headers = { Accept: "application/json" };
    if (last && last.fitId === shown) headers["If-None-Match"] = last.etag;
    const response = await fetch(`/v1/sets/${encodeURIComponent(id)}/posterior`,
                                 { headers, cache: "no-store", credentials: "same-origin" });
    if (response.status === 304) return false;
    if (!response.ok) return false; // 404: no posterior yet; 401: reads need a key
    const body = await response.json();
    seen.set(id, { etag: response.headers.get("ETag"), fitId: body.fit_id });
    return body.fit_id !== shown;
  }

  async function refresh(ids) {
    const response = await fetch(window.location.href,
                                 { headers: { Accept: "text/html" }, cache: "no-store" });
    if (!response.ok) return;
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    const incoming = fresh.getElementById("content");
    const current = document.getElementById("content");
    if (!incoming || !current) return;
    const active = document.activeElement;
    const focusId = active && current.contains(active) ? active.id : null;
    const open = Array.from(current.querySelectorAll("details[open][id]"), (d) => d.id);
    const scroll = [window.scrollX, window.scrollY];
    current.replaceWith(document.adoptNode(incoming));
    for (const id of open) {
      const details = document.getElementById(id);
      if (details) details.open = true;
    }
    if (focusId) {
      const target = document.getElementById(focusId);
      if (target) target.focus({ preventScroll: true });
    }
    window.scrollTo(scroll[0], scroll[1]);
    document.title = fresh.title;
    const said = ids.map((id) => {
      const block = document.querySelector(`[data-poll-set="${CSS.escape(id)}"]`);
      return block ? block.dataset.summary : "";
    }).filter(Boolean);
    const live = document.getElementById("announce");
    if (live && said.length) live.textContent = said.join(" ");
    document.documentElement.dataset.refreshed = String(Date.now());
  }

  async function tick() {
    if (!busy && !document.hidden) {
      busy = true;
      try {
        const ids = [];
        for (const block of blocks()) {
          if (await changed(block)) ids.push(block.dataset.pollSet);
        }
        if (ids.length) await refresh(ids);
      } catch (error) {
        // the server is restarting or the network is down: try again at the next tick
      } finally {
        busy = false;
      }
    }
    window.setTimeout(tick, POLL_MS);
  }

  if (blocks().length) window.setTimeout(tick, POLL_MS);
})();
