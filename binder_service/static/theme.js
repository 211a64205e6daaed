/* The light or dark theme, as the user chose it on the hub.

   JupyterHub's own pages keep the choice in localStorage under "jupyterhub-bs-theme";
   the Binder service shares the hub's origin, so its pages read the same key and look
   like the hub's. Loaded in <head> (not deferred) so a dark page never flashes light.
   The #theme-toggle button switches and stores the choice, as the hub's does. */
"use strict";
(function () {
  const KEY = "jupyterhub-bs-theme";
  const root = document.documentElement;
  const darkQuery = window.matchMedia("(prefers-color-scheme: dark)");

  function stored() {
    try {
      return window.localStorage.getItem(KEY);
    } catch (err) {
      return null; // storage disabled: follow the system setting
    }
  }

  function preferred() {
    const theme = stored();
    if (theme === "light" || theme === "dark") return theme;
    return darkQuery.matches ? "dark" : "light";
  }

  function apply(theme) {
    root.setAttribute("data-bs-theme", theme);
    const toggle = document.getElementById("theme-toggle");
    if (toggle) toggle.setAttribute("aria-pressed", String(theme === "dark"));
  }

  apply(preferred());
  darkQuery.addEventListener("change", () => apply(preferred()));
  window.addEventListener("DOMContentLoaded", () => {
    apply(preferred());
    const toggle = document.getElementById("theme-toggle");
    if (!toggle) return;
    toggle.addEventListener("click", () => {
      const theme = root.getAttribute("data-bs-theme") === "dark" ? "light" : "dark";
      try {
        window.localStorage.setItem(KEY, theme);
      } catch (err) {
        /* not stored: this page only */
      }
      apply(theme);
    });
  });
})();
