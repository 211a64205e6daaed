/* The landing page: a pasted repository address or DOI becomes a launch link.

   Contract with the service (data-* attributes of <main>):
   - data-base-url: the service's prefix, ending in "/" (e.g. "/services/binder/");
     the link is location.origin + base + path.
   - data-check-url: GET <check-url><v2 path>[?labpath=...] answers
       200 {"path": "v2/...", "label": "what it names"}   the link is good, or
       400 {"reason": "one line"}                         shown next to the field.
     "path" is the spec's canonical path (RepoSpec.path); when it holds no "?", the
     page adds the query it sent.
   - data-badge-url: the badge (an SVG), linked from the badge snippets.

   The path is built as egi_hub.binder_service.specs.RepoSpec.path builds it:
     gh      v2/gh/<owner>/<repo>/<ref, percent-quoted, "/" kept>
     gl/git  v2/<provider>/<repository, percent-quoted, "/" too>/<ref, "/" kept>
     zenodo/doi  v2/<provider>/<doi>
   with Python's quote() rules (only letters, digits and "_.-~" are left as they are).

   Each link shown is announced as a "binder-link" event on <main> ({provider, repo}),
   and a link hidden again as one with a null detail (tokens.js listens). */
"use strict";
(function () {
  const main = document.getElementById("main");
  const BASE = main.dataset.baseUrl;
  const CHECK = main.dataset.checkUrl;
  const BADGE = new URL(main.dataset.badgeUrl, window.location.href).href;
  const GIT_PROVIDERS = new Set(["gh", "gl", "git"]);
  const encoder = new TextEncoder();

  const form = document.getElementById("binder-form");
  const repoInput = document.getElementById("repo-input");
  const providerSelect = document.getElementById("provider-select");
  const refInput = document.getElementById("ref-input");
  const fileInput = document.getElementById("file-input");
  const submit = document.getElementById("make-link");
  const result = document.getElementById("result");
  const formStatus = document.getElementById("form-status");
  const fields = { repo: repoInput, ref: refInput, file: fileInput };

  /** Python's urllib.parse.quote(text, safe): UTF-8, upper-case hex. */
  function quote(text, safe) {
    let out = "";
    for (const ch of text) {
      if (/^[A-Za-z0-9_.~-]$/.test(ch) || safe.includes(ch)) {
        out += ch;
      } else {
        for (const byte of encoder.encode(ch)) {
          out += "%" + byte.toString(16).toUpperCase().padStart(2, "0");
        }
      }
    }
    return out;
  }

  /** RepoSpec.path. */
  function specPath(provider, repo, ref) {
    if (provider === "gh") return `v2/gh/${repo}/${quote(ref, "/")}`;
    if (provider === "gl" || provider === "git") {
      return `v2/${provider}/${quote(repo, "")}/${quote(ref, "/")}`;
    }
    return `v2/${provider}/${repo}`;
  }

  class InputError extends Error {
    constructor(message, field) {
      super(message);
      this.field = field || "repo";
    }
  }

  function decoded(text) {
    try {
      return decodeURIComponent(text);
    } catch (err) {
      return text;
    }
  }

  const DOI = /^(?:doi:\s*|https?:\/\/(?:dx\.)?doi\.org\/)?(10\.\d{4,9}\/\S+)$/i;
  const ZENODO_RECORD = /^https?:\/\/(?:www\.)?zenodo\.org\/(?:records?|deposit)\/(\d+)\/?(?:[?#].*)?$/i;
  const ZENODO_DOI_PAGE = /^https?:\/\/(?:www\.)?zenodo\.org\/doi\/(10\.\d{4,9}\/[^?#]+?)\/?$/i;
  const GITHUB = /^(?:https?:\/\/(?:www\.)?github\.com\/|git@github\.com:)([^?#]*)/i;
  const GITLAB = /^(?:https?:\/\/(?:www\.)?gitlab\.com\/|git@gitlab\.com:)([^?#]*)/i;
  const SSH = /^[\w.-]+@[\w.-]+:/;
  const SCHEME = /^[a-z][a-z0-9+.-]*:\/\//i;

  /** The DOI in a pasted DOI, doi.org address or Zenodo record address, else null. */
  function findDoi(text) {
    let m = text.match(ZENODO_RECORD);
    if (m) return `10.5281/zenodo.${m[1]}`;
    m = text.match(ZENODO_DOI_PAGE) || text.match(DOI);
    return m ? decoded(m[1]).replace(/\/+$/, "") : null;
  }

  /** Segments of a GitHub or GitLab address after the host: the project (all segments
      before GitLab's "-" or GitHub's "tree"/"blob"), then a ref and a file if the
      address names them (".../tree/<ref>", ".../blob/<ref>/<file>"). */
  function hostedProject(rest, provider) {
    const segments = rest.split("/").filter((s) => s !== "").map(decoded);
    let end = segments.indexOf("-");
    if (provider === "gh") end = Math.min(segments.length, 2);
    if (end < 0) end = segments.length;
    const project = segments.slice(0, end);
    let after = segments.slice(end);
    if (after[0] === "-") after = after.slice(1);
    if (project.length) project[project.length - 1] = project[project.length - 1].replace(/\.git$/, "");
    let ref = "";
    let file = "";
    if (after[0] === "tree" && after.length > 1) ref = after.slice(1).join("/");
    else if (after[0] === "blob" && after.length > 2) {
      ref = after[1];
      file = after.slice(2).join("/");
    }
    return { project, ref, file };
  }

  /** What the pasted text names: {provider, repo, ref, file} (ref and file as the
      address gives them, else ""); InputError when it names nothing usable. */
  function infer(text, chosen) {
    text = text.trim();
    if (!text) throw new InputError("Paste a repository address or a DOI.");
    if (chosen === "zenodo" || chosen === "doi") {
      const doi = findDoi(text);
      if (!doi) throw new InputError("This is not a DOI: a DOI looks like 10.5281/zenodo.1234567.");
      return { provider: chosen, repo: doi, ref: "", file: "" };
    }
    if (chosen === "git") return { provider: "git", repo: text, ref: "", file: "" };
    const gh = text.match(GITHUB);
    const gl = text.match(GITLAB);
    if (chosen === "gh" || (!chosen && gh)) {
      const { project, ref, file } = hostedProject(gh ? gh[1] : text, "gh");
      if (project.length < 2) {
        throw new InputError("A GitHub repository is https://github.com/<owner>/<repo>.");
      }
      return { provider: "gh", repo: project.join("/"), ref, file };
    }
    if (chosen === "gl" || (!chosen && gl)) {
      const { project, ref, file } = hostedProject(gl ? gl[1] : text, "gl");
      if (project.length < 2) {
        throw new InputError("A GitLab project is https://gitlab.com/<group>/<project>.");
      }
      return { provider: "gl", repo: project.join("/"), ref, file };
    }
    const doi = findDoi(text);
    if (doi) {
      const provider = doi.toLowerCase().startsWith("10.5281/zenodo.") ? "zenodo" : "doi";
      return { provider, repo: doi, ref: "", file: "" };
    }
    if (SCHEME.test(text)) return { provider: "git", repo: text, ref: "", file: "" };
    if (SSH.test(text)) {
      throw new InputError("SSH addresses (user@host:path) cannot be fetched: paste the repository's https:// address.");
    }
    throw new InputError(
      "Paste the repository's full address (https://… or git://…) or a DOI (10.…), or choose its kind.",
    );
  }

  function clearErrors() {
    for (const [name, input] of Object.entries(fields)) {
      document.getElementById(`${name}-error`).textContent = "";
      input.removeAttribute("aria-invalid");
    }
  }

  function showError(message, field) {
    const input = fields[field] || repoInput;
    document.getElementById(`${fields[field] ? field : "repo"}-error`).textContent = message;
    input.setAttribute("aria-invalid", "true");
    input.focus();
  }

  /** Which field a reason from the service is about. */
  function fieldOf(reason) {
    if (/\b(labpath|urlpath|filepath)\b/.test(reason)) return "file";
    if (/\bref\b/.test(reason)) return "ref";
    return "repo";
  }

  function htmlAttr(text) {
    return text.replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;");
  }

  function announce(detail) {
    main.dispatchEvent(new CustomEvent("binder-link", { detail }));
  }

  function showResult(link, label, spec) {
    document.getElementById("result-label").textContent = label;
    document.getElementById("link-output").value = link;
    document.getElementById("launch-button").href = link;
    document.getElementById("badge-markdown").value = `[![Binder](${BADGE})](${link})`;
    document.getElementById("badge-rst").value =
      `.. image:: ${BADGE}\n   :target: ${link}\n   :alt: Binder`;
    document.getElementById("badge-html").value =
      `<a href="${htmlAttr(link)}"><img src="${htmlAttr(BADGE)}" alt="Binder"></a>`;
    result.hidden = false;
    announce({ provider: spec.provider, repo: spec.repo });
    fitTextareas();
    formStatus.textContent = `Launch link ready: ${label}.`;
  }

  /** Each snippet shown whole: its box as high as its wrapped text. */
  function fitTextareas() {
    for (const area of result.querySelectorAll("textarea")) {
      area.style.height = "auto";
      area.style.height = `${area.scrollHeight + 2}px`;
    }
  }
  window.addEventListener("resize", () => result.hidden || fitTextareas());

  let attempt = 0;

  async function makeLink() {
    const mine = ++attempt;
    clearErrors();
    result.hidden = true;
    announce(null);
    formStatus.textContent = "";
    let spec;
    try {
      spec = infer(repoInput.value, providerSelect.value);
    } catch (err) {
      if (err instanceof InputError) return showError(err.message, err.field);
      throw err;
    }
    const git = GIT_PROVIDERS.has(spec.provider);
    const givenRef = refInput.value.trim();
    if (!git && givenRef) {
      return showError("A DOI names one archived record: leave the branch empty.", "ref");
    }
    if (git && !givenRef && spec.ref) refInput.value = spec.ref;
    if (!fileInput.value.trim() && spec.file) fileInput.value = spec.file;
    const ref = git ? refInput.value.trim() || "HEAD" : "";
    const file = fileInput.value.trim().replace(/^\/+/, "");
    const path = specPath(spec.provider, spec.repo, ref);
    const query = file ? `?labpath=${quote(file, "/")}` : "";

    submit.disabled = true;
    formStatus.textContent = "Checking the link…";
    let answer;
    let body = null;
    try {
      answer = await fetch(CHECK + path + query, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      body = await answer.json().catch(() => null);
    } catch (err) {
      answer = null;
    } finally {
      if (mine === attempt) submit.disabled = false;
    }
    if (mine !== attempt) return; // a newer request is on its way
    formStatus.textContent = "";
    if (answer && answer.ok && body && typeof body.path === "string") {
      const canonical = body.path.replace(/^\/+/, "");
      const link = window.location.origin + BASE + (canonical.includes("?") ? canonical : canonical + query);
      return showResult(link, typeof body.label === "string" ? body.label : canonical, spec);
    }
    if (answer && body && typeof body.reason === "string") {
      return showError(body.reason, fieldOf(body.reason));
    }
    const why = answer ? `the service answered HTTP ${answer.status}` : "the service cannot be reached";
    showError(`Could not check the link (${why}). Try again in a moment.`, "repo");
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    makeLink();
  });
  // An edited form makes the shown link stale.
  for (const input of [repoInput, providerSelect, refInput, fileInput]) {
    input.addEventListener("input", () => {
      if (!result.hidden) {
        result.hidden = true;
        announce(null);
        formStatus.textContent = "The form changed: get the link again.";
      }
    });
  }
})();
