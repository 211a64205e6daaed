/* Copy buttons: <button data-copy="ID"> copies the value of the field with that id and
   says so in #copy-status (a status region). The clipboard API needs a secure context
   (https or localhost); elsewhere the field's text is selected and copied the old way,
   and if that fails too, it is left selected for the user to copy. */
"use strict";
(function () {
  function say(text) {
    const status = document.getElementById("copy-status");
    if (!status) return;
    status.textContent = "";
    // A new text in the region, even when it is the same words as last time.
    window.setTimeout(() => {
      status.textContent = text;
    }, 50);
  }

  function legacyCopy(field) {
    field.focus();
    field.select();
    try {
      return document.execCommand("copy");
    } catch (err) {
      return false;
    }
  }

  async function copy(button) {
    const field = document.getElementById(button.dataset.copy);
    if (!field) return;
    const what = field.labels && field.labels.length ? field.labels[0].textContent.trim() : "text";
    try {
      if (!navigator.clipboard || !window.isSecureContext) throw new Error("no clipboard");
      await navigator.clipboard.writeText(field.value);
      say(`Copied: ${what}.`);
    } catch (err) {
      if (legacyCopy(field)) say(`Copied: ${what}.`);
      else say(`Could not copy: ${what} is selected, press Ctrl+C (⌘C on a Mac) to copy it.`);
    }
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-copy]");
    if (button) copy(button);
  });
})();
