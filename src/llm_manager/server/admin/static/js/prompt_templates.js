// Template editor: add and remove declared-variable rows. Without JavaScript the form still works:
// it always carries one empty row, and a row whose fields are all empty is ignored when saved.
"use strict";

(() => {
  const rows = document.getElementById("variable-rows");
  const template = document.getElementById("variable-row-template");
  const add = document.querySelector("[data-add-variable]");
  if (!rows || !template || !add) return;
  document.documentElement.classList.add("js");

  const showRemoveButtons = (root) => {
    root.querySelectorAll("[data-remove-variable]").forEach((button) => button.classList.remove("hidden"));
  };

  add.addEventListener("click", () => {
    // Row numbers only need to be unique: the server reads the rows in on-page order.
    const index = Number(rows.dataset.nextIndex || rows.children.length);
    rows.dataset.nextIndex = String(index + 1);
    const html = template.innerHTML.replaceAll("__index__", String(index));
    const holder = document.createElement("div");
    holder.innerHTML = html;
    const row = holder.firstElementChild;
    if (!row) return;
    rows.appendChild(row);
    showRemoveButtons(row);
    const name = row.querySelector("input[type=text]");
    if (name) name.focus();
  });

  rows.addEventListener("click", (event) => {
    const button = event.target instanceof Element ? event.target.closest("[data-remove-variable]") : null;
    if (!button) return;
    const row = button.closest("[data-variable-row]");
    if (row) row.remove();
    if (!rows.querySelector("[data-variable-row]")) add.click();
  });

  add.classList.remove("hidden");
  showRemoveButtons(rows);
})();
