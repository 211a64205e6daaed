/* The launch progress page: follows one launch's event stream to the session.

   Contract with the service (data-* attributes of <main>):
   - data-build-url: an EventSource stream (text/event-stream). Each event's data is
     JSON in mybinder's shape, {"phase": ..., "message": "...\n"}:
       waiting    "position": launches ahead in the queue (0: next)
       fetching, building (one or more log lines in "message"), built, launching
       ready      "url": where the session is (the page goes there), "token" (unused here)
       failed     "message": the one-line reason; the page closes the stream
     Every message is appended to the build log. An event may carry an "id:"
     (increasing integers): after a reconnection the page skips ids it has seen, so a
     stream that replays from the start (or honours Last-Event-ID) shows each line once.
     A stream that drops without ready/failed is reopened by the browser ("reconnecting").
   - data-link: the shareable launch link; data-badge-url: the badge (both made absolute).
   - data-confirm="true" (a link not opened from the service's own pages: another
     site's, a bookmark, a typed address): the stream is not opened on load. The page
     shows what will run (#confirm) with a Launch button, focused; pressing it hides
     #confirm, shows the progress (#progress) and starts exactly as a page without
     data-confirm does on load. Cancel is a plain link.
   The log keeps the last MAX_LINES lines in the page. */
"use strict";
(function () {
  const MAX_LINES = 5000;
  const main = document.getElementById("main");
  const link = new URL(main.dataset.link, window.location.href).href;
  const badge = new URL(main.dataset.badgeUrl, window.location.href).href;
  const statusLine = document.getElementById("launch-status");
  const reconnecting = document.getElementById("reconnecting");
  const log = document.getElementById("build-log");
  const trimmed = document.getElementById("log-trimmed");
  const steps = Array.from(document.querySelectorAll("#phases .phase"));
  const order = steps.map((li) => li.dataset.phase);
  const seen = new Set();
  const STATE_TEXT = {
    pending: "(not started)",
    active: "(in progress)",
    done: "(done)",
    skipped: "(not needed)",
    failed: "(failed)",
  };

  document.getElementById("link-output").value = link;
  document.getElementById("badge-markdown").value = `[![Binder](${badge})](${link})`;

  // ---- the build log: lines queued, written once per frame, the oldest dropped ----
  let queued = [];
  let lineCount = 0;
  let flushing = false;
  let dropped = false;

  function flush() {
    flushing = false;
    if (!queued.length) return;
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 24;
    const fragment = document.createDocumentFragment();
    for (const line of queued) fragment.appendChild(document.createTextNode(line + "\n"));
    log.appendChild(fragment);
    lineCount += queued.length;
    queued = [];
    while (lineCount > MAX_LINES && log.firstChild) {
      log.removeChild(log.firstChild);
      lineCount -= 1;
      dropped = true;
    }
    if (dropped) trimmed.hidden = false;
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  function appendLog(message) {
    if (typeof message !== "string" || message === "") return;
    const text = message.replace(/\r\n?/g, "\n").replace(/\n$/, "");
    for (const line of text.split("\n")) queued.push(line);
    if (queued.length > MAX_LINES) {
      queued = queued.slice(-MAX_LINES);
      dropped = true;
    }
    if (!flushing) {
      flushing = true;
      window.requestAnimationFrame(flush);
    }
  }

  // ---- the steps ----
  let status = statusLine.textContent;

  function say(text) {
    status = text;
    statusLine.textContent = text;
  }

  function setState(li, state, detail) {
    li.dataset.state = state;
    li.querySelector(".phase-state").textContent = STATE_TEXT[state];
    if (state === "active") li.setAttribute("aria-current", "step");
    else li.removeAttribute("aria-current");
    if (detail !== undefined) li.querySelector(".phase-detail").textContent = detail;
  }

  function ahead(position) {
    if (typeof position !== "number" || !(position >= 0)) return "";
    if (position === 0) return "you are next";
    return position === 1 ? "1 launch ahead of you" : `${position} launches ahead of you`;
  }

  /** Move the steps to ``phase``: earlier steps done (or not needed, if the stream
      never named them), this one in progress. */
  function advance(phase, detail) {
    const index = order.indexOf(phase);
    if (index < 0) return false;
    seen.add(phase);
    steps.forEach((li, i) => {
      if (i < index) {
        if (li.dataset.state !== "done" && li.dataset.state !== "skipped") {
          if (seen.has(order[i])) setState(li, "done", "");
          else setState(li, "skipped", order[i] === "building" ? "already built, reused" : "");
        }
      } else if (i === index) {
        setState(li, "active", detail);
      }
    });
    const text = steps[index].querySelector(".phase-text").textContent;
    say(detail ? `${text}: ${detail}` : `${text}…`);
    return true;
  }

  // ---- the stream ----
  let finished = false;
  let lastId = -1;
  let stream = null;

  function fail(reason) {
    finished = true;
    stream.close();
    flush();
    reconnecting.hidden = true;
    const current = steps.find((li) => li.dataset.state === "active") ||
      steps.find((li) => li.dataset.state === "pending");
    if (current) setState(current, "failed");
    document.getElementById("launch-title").textContent = "Launch failed";
    document.title = document.title.replace(/^Launching\b/, "Launch failed:");
    say("The launch failed.");
    statusLine.hidden = true; // the alert says it, with the reason
    document.getElementById("launch-failed").hidden = false;
    document.getElementById("failure-reason").textContent = reason;
  }

  function ready(url) {
    let target;
    try {
      target = new URL(url, window.location.href);
    } catch (err) {
      target = null;
    }
    if (!target || (target.protocol !== "https:" && target.protocol !== "http:")) {
      fail("The service answered with a session address that is not a web page.");
      return;
    }
    finished = true;
    stream.close();
    flush();
    steps.forEach((li) => li.dataset.state !== "skipped" && setState(li, "done", ""));
    advance("ready");
    say("Ready: opening your session…");
    window.location.assign(target.href);
  }

  function reconnected() {
    if (reconnecting.hidden) return;
    reconnecting.hidden = true;
    statusLine.textContent = status;
  }

  function start() {
    stream = new EventSource(main.dataset.buildUrl);
    stream.addEventListener("open", reconnected);

    stream.addEventListener("message", (event) => {
      if (finished) return;
      if (/^\d+$/.test(event.lastEventId)) {
        const id = Number(event.lastEventId);
        if (id <= lastId) return; // replayed after a reconnection
        lastId = id;
      }
      reconnected();
      let data;
      try {
        data = JSON.parse(event.data);
      } catch (err) {
        return; // not an event of ours
      }
      if (!data || typeof data !== "object") return;
      const phase = typeof data.phase === "string" ? data.phase : "";
      const message = typeof data.message === "string" ? data.message : "";
      appendLog(message);
      if (phase === "failed") {
        fail(message.trim() || "The launch failed without a reason.");
      } else if (phase === "ready") {
        ready(typeof data.url === "string" ? data.url : "");
      } else if (phase === "waiting") {
        advance(phase, ahead(data.position));
      } else if (phase && !seen.has(phase)) {
        advance(phase);
      }
    });

    stream.addEventListener("error", () => {
      if (finished) return;
      if (stream.readyState === EventSource.CLOSED) {
        // Refused for good (an HTTP error, not an event stream): the browser gives up.
        fail("The build service refused the progress stream. Try again, or check the link.");
      } else {
        reconnecting.hidden = false;
        statusLine.textContent = "Connection lost: reconnecting…";
      }
    });
  }

  // ---- a link from another site: ask first ----
  const confirmBox = document.getElementById("confirm");
  if (main.dataset.confirm === "true" && confirmBox) {
    const button = document.getElementById("confirm-launch");
    button.addEventListener("click", () => {
      confirmBox.hidden = true;
      document.getElementById("launch-for").hidden = false;
      document.getElementById("progress").hidden = false;
      const title = document.getElementById("launch-title");
      title.textContent = "Starting a Binder session";
      const label = document.getElementById("launch-label").textContent;
      const asked = `Launch ${label}?`;
      if (document.title.startsWith(asked)) {
        document.title = `Launching ${label}${document.title.slice(asked.length)}`;
      }
      title.focus(); // the button is gone: the heading, then the status, are read next
      start();
    }, { once: true });
    button.focus();
  } else {
    start();
  }
})();
