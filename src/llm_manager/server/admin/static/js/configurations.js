// Configuration form: show only the connection fields the chosen provider takes.
// Without JavaScript every field stays visible and the server ignores those the provider does not use.
"use strict";

(() => {
  const select = document.querySelector("[data-provider-select]");
  const source = document.getElementById("provider-capabilities");
  if (!select || !source) return;
  const capabilities = JSON.parse(source.textContent || "{}");

  const apply = () => {
    const provider = capabilities[select.value] || {};
    const shown = { base_url: provider.takes_base_url !== false, api_key: provider.takes_api_key !== false };
    document.querySelectorAll("[data-provider-field]").forEach((block) => {
      block.classList.toggle("hidden", !shown[block.dataset.providerField]);
    });
    const baseUrl = document.getElementById("f-base_url");
    if (baseUrl) baseUrl.placeholder = provider.default_base_url || "https://…";
  };

  select.addEventListener("change", apply);
  apply();
})();
