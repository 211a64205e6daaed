/* The landing page's "Private repository" part: keep an access token for the host of
   the git repository whose link is shown (landing.js announces it as a "binder-link"
   event on <main>: {provider, repo}, or null when the link is hidden).

   Contract with the service (data-* attributes of #private-repo, see token_api.py):
   - data-api: GET <api> -> {"tokens": [{"host", "expires"}...]}; PUT <api>/<host>
     {"token": "..."} -> {"host", "expires"} or 400 {"reason"}; DELETE <api>/<host>.
     <host> is an https origin: "host", or "host:port" for a port other than 443 (a
     token is kept for one origin, and only sent there over https).
     Writes send the page's XSRF token (data-xsrf) in the X-XSRFToken header.
   - data-github, data-gitlab: the origins of gh and gl links on this site (empty when
     the site's API for them is not https: no token is taken).
   For a visitor not logged in, data-api is empty and the part only says where to sign
   in (the host shown, no form).
   The token is never kept by the page: the field is emptied once it is saved. */
"use strict";
(function () {
  const main = document.getElementById("main");
  const part = document.getElementById("private-repo");
  if (!part) return;
  const API = part.dataset.api;
  const input = document.getElementById("token-input");
  const save = document.getElementById("token-save");
  const forget = document.getElementById("token-forget");
  const status = document.getElementById("token-status");
  let host = null;

  /** The https origin ("host" or "host:port") a gh, gl or git repository is fetched
      from, else null (not over https: no token is ever sent to it). */
  function hostOf(provider, repo) {
    if (provider === "gh") return part.dataset.github || null;
    if (provider === "gl") return part.dataset.gitlab || null;
    if (provider !== "git") return null;
    try {
      const url = new URL(repo);
      if (url.protocol !== "https:" || url.username || url.password) return null;
      const host = url.hostname.toLowerCase().replace(/\.$/, "");
      return url.port ? `${host}:${url.port}` : host; // (URL drops the default 443)
    } catch (err) {
      return null;
    }
  }

  async function call(method, path, body) {
    const init = {
      method,
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-XSRFToken": part.dataset.xsrf },
    };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const answer = await fetch(API + path, init);
    const data = answer.status === 204 ? null : await answer.json().catch(() => null);
    return { ok: answer.ok, status: answer.status, data };
  }

  function until(expires) {
    return new Date(expires * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  async function refresh() {
    forget.hidden = true;
    status.textContent = "";
    try {
      const got = await call("GET", "");
      const mine = got.ok && got.data ? got.data.tokens.find((t) => t.host === host) : null;
      if (mine) {
        forget.hidden = false;
        status.textContent = `A token for ${host} is kept until ${until(mine.expires)}.`;
      }
    } catch (err) {
      status.textContent = "";
    }
  }

  main.addEventListener("binder-link", (event) => {
    const detail = event.detail;
    host = detail ? hostOf(detail.provider, detail.repo) : null;
    part.hidden = !host;
    if (!host) return;
    for (const el of part.querySelectorAll(".token-host")) el.textContent = host;
    if (API) refresh();
  });

  if (!API) return; // not logged in: no form
  save.addEventListener("click", async () => {
    if (!host) return;
    const token = input.value.trim();
    if (!token) {
      status.textContent = "Paste a token first.";
      input.focus();
      return;
    }
    save.disabled = true;
    try {
      const got = await call("PUT", "/" + encodeURIComponent(host), { token });
      if (got.ok) {
        input.value = "";
        forget.hidden = false;
        status.textContent = `Token saved for ${host} until ${until(got.data.expires)}.`;
      } else {
        const why = got.data && typeof got.data.reason === "string" ? got.data.reason : `HTTP ${got.status}`;
        status.textContent = `The token was not saved: ${why}.`;
      }
    } catch (err) {
      status.textContent = "The token was not saved: the service cannot be reached.";
    } finally {
      save.disabled = false;
    }
  });

  forget.addEventListener("click", async () => {
    if (!host) return;
    try {
      const got = await call("DELETE", "/" + encodeURIComponent(host));
      status.textContent = got.ok || got.status === 404 ? `No token is kept for ${host}.` : `HTTP ${got.status}`;
      if (got.ok || got.status === 404) forget.hidden = true;
    } catch (err) {
      status.textContent = "The service cannot be reached.";
    }
  });
})();
