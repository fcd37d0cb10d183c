// Charts for the dashboard and statistics pages, built from JSON data islands (no inline script:
// the Content-Security-Policy forbids it). Markup:
//   <canvas data-chart="island-id" aria-label="..."></canvas>
//   <script type="application/json" id="island-id">{"type": "bar", "labels": [...],
//     "series": [{"label": "...", "data": [...], "text": [...]}], "stacked": true, "money": true}</script>
// The same numbers are in a <details> table beside each chart for screen readers and copying.
"use strict";

(() => {
  const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

  function formatValue(value, money) {
    if (money) {
      // Two decimals from a dollar up, otherwise enough significant digits for cents' fractions.
      if (Math.abs(value) >= 1 || value === 0) {
        return "$" + value.toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
      }
      return "$" + Number(value.toPrecision(2)).toString();
    }
    return value.toLocaleString();
  }

  function datasets(spec) {
    return spec.series.map((series, index) => {
      const colour = PALETTE[index % PALETTE.length];
      return {
        label: series.label,
        data: series.data,
        backgroundColor: spec.type === "line" ? colour + "33" : colour,
        borderColor: colour,
        borderWidth: spec.type === "line" ? 2 : 0,
        pointRadius: spec.type === "line" && series.data.length > 60 ? 0 : 2,
        tension: 0.2,
      };
    });
  }

  function build(canvas) {
    const island = document.getElementById(canvas.dataset.chart);
    if (!island || typeof window.Chart === "undefined") return;
    const spec = JSON.parse(island.textContent);
    const stacked = Boolean(spec.stacked);
    const money = Boolean(spec.money);
    new window.Chart(canvas, {
      type: spec.type,
      data: { labels: spec.labels, datasets: datasets(spec) },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: "index", intersect: false },
        plugins: {
          legend: { display: spec.series.length > 1, position: "bottom" },
          tooltip: {
            callbacks: { label: (item) => `${item.dataset.label}: ${formatValue(item.parsed.y, money)}` },
          },
        },
        scales: {
          x: { stacked, ticks: { autoSkip: true, maxRotation: 45 } },
          y: { stacked, beginAtZero: true, ticks: { callback: (value) => formatValue(Number(value), money) } },
        },
      },
    });
  }

  function buildAll() {
    document.querySelectorAll("canvas[data-chart]").forEach(build);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", buildAll);
  } else {
    buildAll();
  }
})();
