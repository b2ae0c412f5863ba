// Blixard dashboard. Plain JavaScript, no build step. Every value from the
// cluster is put in the page as text (textContent), never as HTML.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);

  // el makes an element: el("td", {class: "x"}, "text", childNode, ...).
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const k of kids) {
      if (k === undefined || k === null) continue;
      e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    }
    return e;
  }

  function nodeLink(id) {
    return id ? el("a", { href: "/node/" + encodeURIComponent(String(id)) }, "node " + id) : "—";
  }

  function badge(state) {
    return el("span", { class: "badge s-" + state }, state || "unknown");
  }

  // The server's clock minus the browser's, from the last answer.
  let skewMs = 0;
  const serverNow = () => Date.now() + skewMs;

  function age(ms) {
    if (!ms) return "—";
    let s = Math.max(0, Math.round((serverNow() - ms) / 1000));
    if (s < 60) return s + "s";
    let m = Math.floor(s / 60);
    if (m < 60) return m + "m" + (s % 60) + "s";
    let h = Math.floor(m / 60);
    if (h < 48) return h + "h" + (m % 60) + "m";
    return Math.floor(h / 24) + "d" + (h % 24) + "h";
  }

  function when(ms) {
    if (!ms) return "—";
    const d = new Date(ms);
    return d.toISOString().replace("T", " ").slice(0, 19) + "Z";
  }

  function mib(n) {
    return n >= 1024 ? (n / 1024).toFixed(n % 1024 ? 1 : 0) + " GiB" : n + " MiB";
  }

  function usage(used, total, fmt) {
    const pct = total > 0 ? Math.min(100, Math.round((100 * used) / total)) : 0;
    const fillBar = el("span");
    fillBar.style.width = pct + "%"; // CSSOM, which the page's CSP allows
    return el("span", {}, el("span", { class: "bar", title: pct + "%" }, fillBar), fmt(used) + " / " + fmt(total));
  }

  function fill(table, rows, cols, emptyText) {
    const body = $(table).tBodies[0];
    body.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { class: "empty", colspan: cols }, emptyText))]));
  }

  function setProblem(text) {
    const p = $("problem");
    p.hidden = !text;
    p.textContent = text || "";
  }

  function setLive(on, text) {
    const l = $("live");
    l.className = "live " + (on ? "on" : "off");
    l.textContent = text;
  }

  async function getJSON(path) {
    const r = await fetch(path, { credentials: "same-origin", cache: "no-store" });
    let body = null;
    try { body = await r.json(); } catch (e) { /* not JSON */ }
    if (r.status === 401) {
      showLogin(body && body.error);
      throw new Error("not signed in");
    }
    if (!r.ok) throw new Error((body && body.error) || r.status + " " + r.statusText);
    return body;
  }

  // ---- sign-in ----

  let started = false;

  function showLogin(msg) {
    $("login").hidden = false;
    $("login-error").textContent = msg || "";
  }

  async function session() {
    const s = await getJSON("/api/session");
    const box = $("session");
    box.replaceChildren();
    if (s.signed_in) {
      const out = el("button", { type: "button" }, "Sign out");
      out.addEventListener("click", async () => {
        await fetch("/api/logout", {
          method: "POST", credentials: "same-origin",
          headers: { "Content-Type": "application/json" }, body: "{}",
        });
        location.reload();
      });
      box.append(out);
    } else if (s.tokens) {
      const inb = el("button", { type: "button" }, "Sign in");
      inb.addEventListener("click", () => showLogin(""));
      box.append(inb);
    }
    if (s.error) showLogin(s.error);
    return s;
  }

  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const r = await fetch("/api/login", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token: $("token").value }),
    });
    if (!r.ok) {
      let msg = r.status + " " + r.statusText;
      try { msg = (await r.json()).error; } catch (e) { /* keep the status */ }
      $("login-error").textContent = msg;
      return;
    }
    // Start afresh, signed in: a stream refused before is closed for good.
    location.reload();
  });

  // ---- the cluster page ----

  function eventRows(events) {
    return events.slice().reverse().map((e) => {
      const subject = [];
      if (e.vm) subject.push(el("a", { href: "/vm/" + encodeURIComponent(e.vm) }, "vm " + e.vm));
      if (e.task_id) subject.push((subject.length ? " " : "") + "task " + e.task_id);
      if (e.node_id) subject.push(subject.length ? " " : "", nodeLink(e.node_id));
      // Membership changes carry no clock: show their log position.
      return el("tr", { "data-event": e.index }, el("td", {}, e.time_ms ? when(e.time_ms) : "log entry " + e.index), el("td", {}, e.kind),
        el("td", {}, ...subject), el("td", {}, e.message));
    });
  }

  function vmRow(v) {
    return el("tr", { "data-vm": v.name, "data-state": v.state },
      el("td", {}, el("a", { href: "/vm/" + encodeURIComponent(v.name) }, v.name)),
      el("td", {}, badge(v.state)),
      el("td", {}, v.desired),
      el("td", {}, nodeLink(v.node_id)),
      el("td", {}, v.vcpus + " vCPU, " + mib(v.memory_mib)),
      el("td", { "data-age": v.created_ms }, age(v.created_ms)),
      el("td", { class: "muted" }, v.reason || ""));
  }

  function taskRow(t) {
    return el("tr", { "data-task": t.id },
      el("td", {}, String(t.id)),
      el("td", {}, badge(t.status)),
      el("td", {}, nodeLink(t.node_id)),
      el("td", {}, String(t.attempt)),
      el("td", {}, el("code", {}, t.command)),
      el("td", { "data-age": t.submitted_ms }, age(t.submitted_ms)),
      el("td", { class: "muted" }, t.exit_code !== undefined ? "exit " + t.exit_code : (t.reason || "")));
  }

  function renderOverview(o) {
    skewMs = o.now_ms ? o.now_ms - Date.now() : skewMs;
    $("cluster").textContent = "cluster " + o.cluster_id;
    $("leader").textContent = o.leader_id ? "node " + o.leader_id : "none (election)";
    $("leader").dataset.leader = String(o.leader_id || 0);
    $("term").textContent = String(o.term);
    $("applied").textContent = String(o.applied_index);
    $("served-by").textContent = "node " + o.node_id;
    $("vms-running").textContent = o.vms_running + " / " + o.vms_total;
    $("tasks-active").textContent = String(o.tasks_active);

    fill("nodes", o.nodes.map((n) => el("tr", { "data-node": n.id, class: n.leader ? "leader" : null },
      el("td", {}, nodeLink(n.id), n.leader ? el("span", { class: "badge leader" }, "leader") : null),
      el("td", {}, badge(n.status), n.drained ? " drained" : "", n.status_reason ? el("div", { class: "muted" }, n.status_reason) : null),
      el("td", {}, n.role + (n.role === "voter" && !n.voter ? " (learner)" : "")),
      el("td", {}, n.address),
      el("td", {}, usage(n.vcpus_used, n.vcpus, String)),
      el("td", {}, usage(n.memory_used_mib, n.memory_mib, mib)),
      el("td", {}, ...Object.keys(n.labels || {}).sort().map((k) => el("span", { class: "label-chip" }, k + "=" + n.labels[k]))),
    )), 7, "no nodes");

    $("vm-count").textContent = o.vms.length < o.vms_total ? "(first " + o.vms.length + " of " + o.vms_total + ")" : "(" + o.vms_total + ")";
    fill("vms", o.vms.map(vmRow), 7, "no VMs");

    $("task-count").textContent = o.tasks.length < o.tasks_total ? "(newest " + o.tasks.length + " of " + o.tasks_total + ")" : "(" + o.tasks_total + ")";
    fill("tasks", o.tasks.map(taskRow), 7, "no tasks");

    fill("events", eventRows(o.events), 4, "no events yet");
  }

  function startOverview() {
    const es = new EventSource("/api/stream");
    es.addEventListener("overview", (m) => {
      setLive(true, "live");
      setProblem("");
      renderOverview(JSON.parse(m.data));
    });
    es.addEventListener("problem", (m) => {
      setProblem("This node cannot read the cluster: " + JSON.parse(m.data).error);
    });
    es.addEventListener("signedout", (m) => {
      es.close();
      setLive(false, "signed out");
      showLogin(JSON.parse(m.data).error);
    });
    es.onopen = () => setLive(true, "live");
    es.onerror = () => {
      setLive(false, "reconnecting…");
      // A refused stream (signed out, token revoked) closes for good: ask
      // the session why instead of retrying blindly.
      if (es.readyState === EventSource.CLOSED) {
        session().catch(() => {});
        setProblem("Lost the live stream from this node; reload to retry.");
      }
    };
  }

  // ---- the VM page ----

  const vmName = () => decodeURIComponent(location.pathname.replace(/^\/vm\//, ""));

  function renderVM(d) {
    skewMs = d.now_ms ? d.now_ms - Date.now() : skewMs;
    const v = d.vm;
    $("vm-state").replaceChildren(badge(v.state));
    $("vm-state").dataset.state = v.state;
    $("vm-desired").textContent = v.desired;
    $("vm-node").replaceChildren(v.node_id ? nodeLink(v.node_id) : "not placed");
    $("vm-size").textContent = v.vcpus + " vCPU, " + mib(v.memory_mib);
    $("vm-age").textContent = age(v.created_ms);
    $("vm-restarts").textContent = String(v.restarts);
    $("vm-reason").textContent = v.reason ? "Last transition: " + v.reason : "";
    const spec = [["image", v.image || "(default)"], ["generation", String(v.generation)],
      ["restart policy", d.restart_policy || ""], ["kernel cmdline", d.cmdline || "(default)"],
      ["features", (d.features || []).join(", ") || "none"]];
    $("vm-spec").replaceChildren(...spec.flatMap(([k, val]) => [el("dt", {}, k), el("dd", {}, val)]));
    fill("events", eventRows(d.events), 4, "no events for this VM");
    $("failure").hidden = !d.failure_console_tail;
    $("failure-tail").textContent = d.failure_console_tail || "";
  }

  async function refreshVM() {
    try {
      renderVM(await getJSON("/api/vms/" + encodeURIComponent(vmName())));
      setLive(true, "live");
      setProblem("");
    } catch (e) {
      setLive(false, "stale");
      setProblem(String(e.message || e));
    }
  }

  async function refreshConsole() {
    try {
      const c = await getJSON("/api/vms/" + encodeURIComponent(vmName()) + "/console");
      $("console-note").textContent = c.error || "";
      const pre = $("console");
      const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.textContent = c.text || "";
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    } catch (e) {
      $("console-note").textContent = String(e.message || e);
    }
  }

  // every runs f now and again ms after each run ends, so slow answers
  // never pile up.
  function every(ms, f) {
    const run = async () => {
      await f();
      setTimeout(run, ms);
    };
    run();
  }

  function startVM() {
    $("vm-name").textContent = vmName();
    document.title = "VM " + vmName() + " — Blixard";
    every(2000, refreshVM);
    every(3000, refreshConsole);
  }

  // ---- the node page ----

  const nodeID = () => location.pathname.replace(/^\/node\//, "");

  function renderNode(d) {
    skewMs = d.now_ms ? d.now_ms - Date.now() : skewMs;
    const n = d.node;
    $("node-status").replaceChildren(badge(n.status), n.leader ? el("span", { class: "badge leader" }, "leader") : "");
    $("node-status").dataset.status = n.status;
    $("node-role").textContent = n.role + (n.role === "voter" && !n.voter ? " (learner)" : "");
    $("node-vcpus").textContent = n.vcpus_used + " / " + n.vcpus;
    $("node-memory").textContent = mib(n.memory_used_mib) + " / " + mib(n.memory_mib);
    $("node-vms").textContent = String(d.vms_total);
    $("node-tasks").textContent = String(d.tasks_total);
    $("node-reason").textContent = (n.drained ? "Drained. " : "") + (n.status_reason ? "Status: " + n.status_reason : "");
    const spec = [["address", n.address], ["labels", Object.keys(n.labels || {}).sort().map((k) => k + "=" + n.labels[k]).join(", ") || "none"],
      ["images", d.images.join(", ") || "none"], ["overcommit", "vCPU ×" + d.vcpu_overcommit + ", memory ×" + d.memory_overcommit],
      ["fencing lease", d.lease_millis ? d.lease_millis + " ms" : "—"]];
    $("node-spec").replaceChildren(...spec.flatMap(([k, val]) => [el("dt", {}, k), el("dd", {}, val)]));
    fill("vms", d.vms.map(vmRow), 7, "no VMs on this node");
    fill("tasks", d.tasks.map(taskRow), 7, "no tasks on this node");
    fill("events", eventRows(d.events), 4, "no events for this node");
  }

  async function refreshNode() {
    try {
      renderNode(await getJSON("/api/nodes/" + encodeURIComponent(nodeID())));
      setLive(true, "live");
      setProblem("");
    } catch (e) {
      setLive(false, "stale");
      setProblem(String(e.message || e));
    }
  }

  function startNode() {
    $("node-id").textContent = nodeID();
    document.title = "Node " + nodeID() + " — Blixard";
    every(2000, refreshNode);
  }

  // ---- start ----

  function start() {
    if (started) return;
    started = true;
    const page = document.body.dataset.page;
    if (page === "vm") startVM();
    else if (page === "node") startNode();
    else startOverview();
    // Ages move on between updates.
    setInterval(() => {
      for (const td of document.querySelectorAll("td[data-age]")) td.textContent = age(Number(td.dataset.age));
    }, 1000);
  }

  session().then((s) => {
    if (s.required && !s.signed_in) {
      showLogin(s.error || "");
      setLive(false, "signed out");
      return;
    }
    start();
  }).catch((e) => setProblem("Cannot reach this node: " + (e.message || e)));
})();
