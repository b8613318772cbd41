// The mr status page: draws the coordinator's JSON API into the page and refreshes it every
// second. Every string from the API goes in as text (textContent, SVG <title>), never as
// markup. Served from the coordinator binary; no dependencies.
"use strict";

(() => {
  const POLL_MS = 1000;
  const RETRY_MS = 5000;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const OUTCOMES = ["succeeded", "running", "failed", "timed_out", "superseded", "cancelled"];
  const OUTCOME_NAMES = {
    succeeded: "succeeded",
    running: "running",
    failed: "failed",
    timed_out: "timed out",
    superseded: "superseded",
    cancelled: "cancelled",
  };

  class AuthError extends Error {}

  const $ = (selector) => document.querySelector(selector);

  // An HTML element; `children` are nodes or strings (inserted as text).
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else node.setAttribute(key, String(value));
    }
    for (const child of children) {
      if (child === undefined || child === null) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null) continue;
      node.setAttribute(key, String(value));
    }
    for (const child of children) {
      if (child === undefined || child === null) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function duration(ms) {
    if (!Number.isFinite(ms) || ms < 0) ms = 0;
    if (ms < 1000) return `${Math.round(ms)} ms`;
    const s = ms / 1000;
    if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ${Math.round(s - m * 60)} s`;
    const h = Math.floor(m / 60);
    if (h < 48) return `${h} h ${m - h * 60} min`;
    return `${Math.floor(h / 24)} d ${h % 24} h`;
  }

  const ago = (ms) => `${duration(ms)} ago`;

  function clock(ms) {
    return new Date(ms).toLocaleString(undefined, { hour12: false });
  }

  function badge(state) {
    const name = String(state || "");
    return el("span", { class: `badge s-${name.toLowerCase()}` }, name);
  }

  function percent(part, total) {
    return total > 0 ? `${(100 * part) / total}%` : "0%";
  }

  // A phase's progress: completed (solid) and in progress (light) of the total.
  function progress(p) {
    const bar = el("div", {
      class: "progress",
      title: `${p.completed} completed, ${p.in_progress} in progress, ${p.idle} idle, of ${p.total}`,
    });
    const done = el("span", { class: "done" });
    done.style.width = percent(p.completed, p.total);
    const running = el("span", { class: "running" });
    running.style.width = percent(p.in_progress, p.total);
    bar.append(done, running);
    return el("div", { class: "phase" }, bar, el("span", { class: "count" }, `${p.completed}/${p.total}`));
  }

  function jobLink(id) {
    return el("a", { href: `/jobs/${encodeURIComponent(id)}` }, el("code", {}, id));
  }

  async function getJSON(url) {
    const response = await fetch(url, {
      credentials: "same-origin",
      headers: { accept: "application/json" },
      cache: "no-store",
    });
    if (response.status === 401) throw new AuthError("the token is needed");
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    return response.json();
  }

  function setLive(text, kind) {
    const live = $("#live");
    if (!live) return;
    live.textContent = text;
    live.className = `live ${kind || ""}`;
  }

  // Calls `refresh` every second while the page is visible; it returns true when nothing
  // will change any more.
  async function poll(refresh) {
    for (;;) {
      let delay = POLL_MS;
      if (!document.hidden) {
        try {
          const finished = await refresh();
          setLive(finished ? "final" : `live · ${new Date().toLocaleTimeString(undefined, { hour12: false })}`, finished ? "final" : "ok");
          if (finished) return;
        } catch (error) {
          if (error instanceof AuthError) {
            setLive("token needed: open the page with ?token=…", "error");
            return;
          }
          setLive(`cannot reach the coordinator; retrying (${error.message})`, "error");
          delay = RETRY_MS;
        }
      }
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }

  // ---- index: jobs and workers ----

  function renderJobs(data) {
    const body = $("#jobs tbody");
    const rows = data.jobs.map((job) => {
      const end = job.finished_at_ms ?? data.now_ms;
      const note = job.error || job.warning || "";
      return el(
        "tr",
        { class: "job", "data-job": job.id, "data-state": job.state },
        el("td", {}, jobLink(job.id)),
        el("td", {}, job.app),
        el("td", { class: "state" }, badge(job.state), job.archived ? el("span", { class: "muted small" }, " archived") : null),
        el("td", {}, progress(job.map)),
        el("td", {}, progress(job.reduce)),
        el("td", { title: clock(job.submitted_at_ms) }, ago(data.now_ms - job.submitted_at_ms)),
        el("td", { class: "num" }, duration(end - job.submitted_at_ms)),
        el("td", { class: `note${job.error ? " error" : ""}`, title: note }, note),
      );
    });
    if (rows.length === 0) {
      rows.push(el("tr", {}, el("td", { colspan: 8, class: "muted" }, "No jobs yet.")));
    }
    body.replaceChildren(...rows);
    $("#jobs-note").textContent =
      data.total > data.jobs.length ? `newest ${data.jobs.length} of ${data.total}` : `${data.total}`;
  }

  function renderWorkers(data) {
    const body = $("#workers tbody");
    const rows = data.workers.map((w) => {
      let task = "";
      if (w.current_task) {
        const slash = w.current_task.indexOf("/");
        task =
          slash > 0
            ? el("span", {}, jobLink(w.current_task.slice(0, slash)), ` ${w.current_task.slice(slash + 1)}`)
            : w.current_task;
      }
      return el(
        "tr",
        { class: "worker", "data-worker": w.id, "data-state": w.state },
        el("td", {}, el("code", {}, w.id)),
        el("td", {}, w.host),
        el("td", {}, badge(w.state)),
        el("td", {}, task),
        el("td", { class: "num" }, w.succeeded),
        el("td", { class: "num" }, w.failed),
        el("td", { title: clock(w.last_seen_ms) }, ago(data.now_ms - w.last_seen_ms)),
      );
    });
    if (rows.length === 0) {
      rows.push(el("tr", {}, el("td", { colspan: 7, class: "muted" }, "No worker has called in yet.")));
    }
    body.replaceChildren(...rows);
  }

  async function refreshIndex() {
    const [jobs, workers] = await Promise.all([getJSON("/api/jobs"), getJSON("/api/workers")]);
    renderJobs(jobs);
    renderWorkers(workers);
    return false;
  }

  // ---- one job ----

  function field(name, ...value) {
    return [el("dt", {}, name), el("dd", {}, ...value)];
  }

  function renderSummary(data) {
    const job = data.job;
    const end = job.finished_at_ms ?? data.now_ms;
    const state = $("#job-state");
    state.replaceChildren(badge(job.state));
    const items = [
      ...field("App", el("code", {}, job.app)),
      ...field("Submitted", clock(job.submitted_at_ms)),
      ...field(job.finished_at_ms ? "Finished" : "Running for", job.finished_at_ms ? clock(job.finished_at_ms) : duration(end - job.submitted_at_ms)),
      ...field("Duration", duration(end - job.submitted_at_ms)),
      ...field("Map tasks", progress(job.map)),
      ...field("Reduce tasks", progress(job.reduce)),
      ...field("Inputs", `${data.inputs.join(", ")}${data.input_files ? ` (${data.input_files} files)` : ""}`),
    ];
    if (data.outputs.length) {
      const more = job.reduce.total > data.outputs.length ? ` … (${job.reduce.total} in all)` : "";
      items.push(...field("Outputs", `${data.outputs.join(", ")}${more}`));
    }
    if (data.max_skipped_records > 0 || job.skipped_records > 0) {
      items.push(...field("Skipped records", `${job.skipped_records} of at most ${data.max_skipped_records}`));
    }
    if (job.warning) items.push(...field("Warning", el("span", { class: "warning" }, job.warning)));
    if (job.error) items.push(...field("Error", el("pre", { class: "error" }, job.error)));
    if (job.archived) {
      items.push(...field("Archived", "only the summary is kept: the per-task records were dropped at a compaction"));
    }
    $("#summary").replaceChildren(el("dl", {}, ...items));
  }

  function renderCounters(data) {
    const box = $("#counters");
    if (data.counters === null || data.counters === undefined) {
      box.replaceChildren(el("p", { class: "muted" }, "This coordinator keeps no job counters."));
      return;
    }
    const names = Object.keys(data.counters).sort();
    if (names.length === 0) {
      box.replaceChildren(el("p", { class: "muted" }, "No counters yet (they sum committed attempts only)."));
      return;
    }
    const rows = names.map((name) =>
      el("tr", {}, el("td", {}, el("code", {}, name)), el("td", { class: "num" }, Number(data.counters[name]).toLocaleString())),
    );
    box.replaceChildren(
      el("table", { class: "grid counters" }, el("thead", {}, el("tr", {}, el("th", {}, "Counter"), el("th", { class: "num" }, "Value"))), el("tbody", {}, ...rows)),
    );
  }

  function renderLegend() {
    const box = $("#legend");
    if (box.childElementCount) return;
    const items = OUTCOMES.map((o) =>
      el("span", { class: "key" }, el("span", { class: `swatch o-${o}` }), OUTCOME_NAMES[o]),
    );
    items.push(el("span", { class: "key" }, el("span", { class: "swatch backup-key" }), "backup copy (hatched)"));
    items.push(el("span", { class: "key" }, el("span", { class: "retry-key" }, "▼"), "task handed out again"));
    box.replaceChildren(...items);
  }

  // Sorts worker ids so that worker-2 comes before worker-10.
  const naturally = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" }).compare;

  // An axis label: time since the chart's start.
  function tickLabel(ms) {
    if (ms === 0) return "0";
    if (ms < 60000) return `${Number((ms / 1000).toFixed(1))} s`;
    return duration(ms);
  }

  // A step between axis ticks that gives at most ~8 of them.
  function tickStep(span) {
    const steps = [100, 200, 500, 1e3, 2e3, 5e3, 1e4, 15e3, 3e4, 6e4, 12e4, 3e5, 6e5, 9e5, 18e5, 36e5, 72e5, 216e5, 432e5, 864e5];
    return steps.find((s) => span / s <= 8) ?? span / 8;
  }

  // One row per worker; within a row, attempts that overlap in time (a batch) go to lanes.
  function renderGantt(data) {
    const tl = data.timeline;
    const box = $("#gantt");
    const note = $("#timeline-note");
    note.textContent =
      tl.attempts_total > tl.attempts.length
        ? `showing the latest ${tl.attempts.length.toLocaleString()} of ${tl.attempts_total.toLocaleString()} attempts`
        : `${tl.attempts_total} attempt${tl.attempts_total === 1 ? "" : "s"}`;
    if (tl.attempts.length === 0) {
      box.replaceChildren(el("p", { class: "muted" }, data.job.archived ? "The job is archived: its attempts are no longer kept." : "No attempt yet."));
      return;
    }
    const now = data.now_ms;
    const attempts = tl.attempts.map((a) => ({ ...a, end: a.end_ms ?? Math.max(now, a.start_ms) }));
    // From the job's submission (time spent waiting shows), unless only the latest
    // attempts are drawn.
    let t0 = tl.attempts_total > attempts.length ? Infinity : data.job.submitted_at_ms;
    let t1 = -Infinity;
    for (const a of attempts) {
      t0 = Math.min(t0, a.start_ms);
      t1 = Math.max(t1, a.end);
    }
    const span = Math.max(t1 - t0, 1);
    const workers = [...new Set(attempts.map((a) => a.worker))].sort(naturally);
    const LABEL = 160;
    const AXIS = 26;
    const LANE = 14;
    const GAP = 3;
    const PAD = 6;
    const MIN_BAR = 3;
    const MAX_LANES = 6;
    const width = Math.max(box.clientWidth || 0, 640);
    const x0 = LABEL;
    const x1 = width - 14;
    const x = (t) => x0 + ((t - t0) / span) * (x1 - x0);
    // Lanes are packed in pixels, so that even the shortest bars do not cover each other.
    const lanes = new Map(workers.map((w) => [w, []]));
    for (const a of attempts) {
      a.x = x(a.start_ms);
      a.w = Math.max(MIN_BAR, x(a.end) - a.x);
      const ends = lanes.get(a.worker);
      let lane = ends.findIndex((end) => end + 1 <= a.x);
      if (lane < 0) {
        if (ends.length < MAX_LANES) {
          lane = ends.length;
          ends.push(a.x + a.w);
        } else {
          lane = ends.indexOf(Math.min(...ends));
        }
      }
      ends[lane] = Math.max(ends[lane], a.x + a.w);
      a.lane = lane;
    }
    const rowTop = new Map();
    let y = AXIS;
    for (const w of workers) {
      const n = Math.max(1, lanes.get(w).length);
      rowTop.set(w, { top: y, height: n * LANE + (n - 1) * GAP + 2 * PAD });
      y += rowTop.get(w).height;
    }
    const height = y + 4;

    const chart = svg("svg", {
      class: "gantt-chart",
      width,
      height,
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-label": `Attempts of job ${data.job.id} by worker over time`,
    });
    chart.append(
      svg(
        "defs",
        {},
        svg(
          "pattern",
          { id: "hatch", width: 6, height: 6, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" },
          svg("rect", { class: "hatch-line", x: 0, y: 0, width: 2.5, height: 6 }),
        ),
      ),
    );
    // Rows and their labels.
    workers.forEach((w, i) => {
      const row = rowTop.get(w);
      chart.append(svg("rect", { class: `row ${i % 2 ? "odd" : "even"}`, x: 0, y: row.top, width, height: row.height }));
      const label = w.length > 22 ? `${w.slice(0, 21)}…` : w;
      chart.append(svg("text", { class: "worker-label", x: 8, y: row.top + row.height / 2 + 4 }, svg("title", {}, w), label));
    });
    // Time axis.
    const step = tickStep(span);
    for (let t = 0; t <= span + 1; t += step) {
      const tx = x(t0 + t);
      chart.append(svg("line", { class: "tick", x1: tx, x2: tx, y1: AXIS - 4, y2: height }));
      chart.append(svg("text", { class: "tick-label", x: tx, y: AXIS - 9, "text-anchor": "middle" }, tickLabel(t)));
    }
    if (!data.job.finished_at_ms && now >= t0) {
      const nx = x(now);
      chart.append(svg("line", { class: "now", x1: nx, x2: nx, y1: AXIS - 4, y2: height }));
    }
    // One bar per attempt.
    for (const a of attempts) {
      const row = rowTop.get(a.worker);
      const by = row.top + PAD + a.lane * (LANE + GAP);
      const bx = a.x;
      const bw = a.w;
      const took = duration(a.end - a.start_ms);
      const title = [
        `${a.task} · attempt ${a.attempt}${a.backup ? " (backup copy)" : ""}${a.retry ? " (handed out again)" : ""}`,
        `worker ${a.worker}`,
        `${OUTCOME_NAMES[a.outcome] || a.outcome}${a.end_ms ? ` after ${took}` : `, for ${took}`}`,
      ];
      if (a.error) title.push(a.error);
      chart.append(
        svg(
          "rect",
          {
            class: `bar o-${a.outcome}${a.backup ? " backup" : ""}${a.retry ? " retry" : ""}`,
            x: bx.toFixed(1),
            y: by,
            width: bw.toFixed(1),
            height: LANE,
            rx: 2,
            "data-attempt": a.attempt,
            "data-task": a.task,
            "data-outcome": a.outcome,
          },
          svg("title", {}, title.join("\n")),
        ),
      );
      if (a.backup) {
        chart.append(svg("rect", { class: "backup-hatch", x: bx.toFixed(1), y: by, width: bw.toFixed(1), height: LANE, rx: 2 }));
      }
      if (a.retry) {
        chart.append(svg("path", { class: "retry-mark", d: `M${(bx - 4).toFixed(1)} ${by - 1} h8 l-4 5 z` }, svg("title", {}, `${a.task}: handed out again`)));
      }
    }
    box.replaceChildren(chart);
  }

  function renderErrors(data) {
    const box = $("#errors");
    const failed = data.timeline.attempts.filter((a) => a.error).slice(-50).reverse();
    if (failed.length === 0) {
      box.replaceChildren(el("p", { class: "muted" }, "No attempt reported an error."));
      return;
    }
    const rows = failed.map((a) =>
      el(
        "tr",
        {},
        el("td", {}, a.task),
        el("td", { class: "num" }, a.attempt),
        el("td", {}, el("code", {}, a.worker)),
        el("td", {}, el("span", { class: `swatch o-${a.outcome}` }), ` ${OUTCOME_NAMES[a.outcome] || a.outcome}`),
        el("td", { class: "note error" }, a.error),
      ),
    );
    box.replaceChildren(
      el(
        "table",
        { class: "grid" },
        el("thead", {}, el("tr", {}, el("th", {}, "Task"), el("th", { class: "num" }, "Attempt"), el("th", {}, "Worker"), el("th", {}, "Outcome"), el("th", {}, "Error"))),
        el("tbody", {}, ...rows),
      ),
    );
  }

  async function refreshJob(id) {
    const data = await getJSON(`/api/jobs/${encodeURIComponent(id)}`);
    renderSummary(data);
    renderCounters(data);
    renderLegend();
    renderGantt(data);
    renderErrors(data);
    document.body.dataset.state = data.job.state;
    // An ended job no longer changes (short of being archived): stop polling.
    return Boolean(data.job.finished_at_ms);
  }

  function start() {
    const page = document.body.dataset.page;
    if (page === "index") poll(refreshIndex);
    else if (page === "job") poll(() => refreshJob(document.body.dataset.job));
    else setLive("", "");
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
