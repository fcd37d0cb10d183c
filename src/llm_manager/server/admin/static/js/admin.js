// Behaviour shared by every admin page. No inline scripts: the Content-Security-Policy forbids them.
"use strict";

// <form data-confirm="Delete it?">: ask before submitting a destructive form.
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
    event.stopImmediatePropagation();
  }
}, true);

// <select data-autosubmit> and <input data-autosubmit>: filter forms apply on change.
document.addEventListener("change", (event) => {
  const input = event.target;
  if (input instanceof HTMLElement && input.dataset.autosubmit !== undefined && input.form) {
    input.form.requestSubmit();
  }
});

// <button data-copy="#selector">: copy a shown-once secret to the clipboard.
document.addEventListener("click", (event) => {
  const button = event.target instanceof Element ? event.target.closest("[data-copy]") : null;
  if (!button) return;
  const source = document.querySelector(button.dataset.copy);
  if (source && navigator.clipboard) {
    navigator.clipboard.writeText(source.textContent.trim()).then(() => { button.textContent = "Copied"; });
  }
});
