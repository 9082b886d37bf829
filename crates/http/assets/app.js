// The Voxanne dashboard: a client of the same API as everyone's (/api/v1), with the session's
// cookie. Reads send nothing more; writes send the session's CSRF token. The clinic is the
// session's (the switcher sets it), so every request, the audio player's included, acts in it.
// Data is only ever put on the page as text (textContent), never as HTML.

const app = { session: null };

// ---- small helpers ----

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const main = () => document.getElementById("main");

function show(title, ...content) {
  document.title = `${title} · Voxanne`;
  const m = main();
  m.replaceChildren(h("h1", {}, title), ...content.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  // After a navigation in the page, focus moves to the new content (a screen reader reads
  // it); on a fresh load it stays at the top, where the first Tab is "Skip to content".
  if (app.navigated) m.focus({ preventScroll: true });
}

function loading(title) {
  show(title, h("p", { role: "status" }, "Loading…"));
}

function alertBox(text) {
  return h("div", { class: "alert", role: "alert" }, text);
}

function when(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

function seconds(n) {
  if (n === null || n === undefined) return "";
  const m = Math.floor(n / 60), s = n % 60;
  return m ? `${m} min ${s} s` : `${s} s`;
}

function badge(text) {
  return h("span", { class: `badge ${text}` }, String(text).replace(/_/g, " "));
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error && body.error.message) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.error && body.error.code;
    this.field = body && body.error && body.error.field;
  }
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET" && method !== "HEAD") {
    if (app.session) headers["X-CSRF-Token"] = app.session.csrf_token;
    if (body !== undefined) headers["Content-Type"] = "application/json";
  }
  const r = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  const data = text ? JSON.parse(text) : null;
  if (!r.ok) {
    if (r.status === 401 && !path.startsWith("/auth/")) {
      app.session = null;
      go(`/sign-in?next=${encodeURIComponent(location.pathname + location.search)}`);
    }
    throw new ApiError(r.status, data);
  }
  return data;
}

// A form whose submit runs `action`; its button is disabled meanwhile and errors show in it.
function form(fields, label, action) {
  const status = h("div", { "aria-live": "polite" });
  const button = h("button", { type: "submit" }, label);
  const f = h("form", { novalidate: true }, fields, button, status);
  f.addEventListener("submit", async (e) => {
    e.preventDefault();
    button.disabled = true;
    status.replaceChildren();
    try {
      await action(new FormData(f));
    } catch (err) {
      status.replaceChildren(alertBox(err.message));
      if (err.field && f.elements[err.field]) f.elements[err.field].focus();
    } finally {
      button.disabled = false;
    }
  });
  return f;
}

function field(name, label, attrs = {}) {
  const id = `f-${name}`;
  return [h("label", { for: id }, label), h("input", { id, name, ...attrs })];
}

// ---- routing ----

const routes = [];
function route(pattern, page, { public: isPublic = false } = {}) {
  const names = [];
  const re = new RegExp(
    "^" + pattern.replace(/:([a-z_]+)/g, (_, n) => (names.push(n), "([^/]+)")) + "/?$",
  );
  routes.push({ re, names, page, isPublic });
}

function go(path) {
  app.navigated = true;
  history.pushState(null, "", path);
  render();
}

document.addEventListener("click", (e) => {
  const a = e.target.closest && e.target.closest("a[href^='/']");
  if (!a || a.target || e.ctrlKey || e.metaKey || e.shiftKey || a.hasAttribute("download")) return;
  e.preventDefault();
  go(a.getAttribute("href"));
});
window.addEventListener("popstate", () => { app.navigated = true; render(); });

async function ensureSession() {
  if (app.session) return app.session;
  try {
    app.session = await api("GET", "/auth/session");
  } catch (err) {
    app.session = null;
  }
  return app.session;
}

async function render() {
  if (app.live) { app.live.close(); app.live = null; }
  const path = location.pathname;
  for (const r of routes) {
    const m = path.match(r.re);
    if (!m) continue;
    const params = Object.fromEntries(r.names.map((n, i) => [n, decodeURIComponent(m[i + 1])]));
    if (!r.isPublic) {
      const session = await ensureSession();
      if (!session) {
        history.replaceState(null, "", `/sign-in?next=${encodeURIComponent(path + location.search)}`);
        return render();
      }
      header();
    } else {
      document.getElementById("top").hidden = true;
    }
    try {
      await r.page(params, new URLSearchParams(location.search));
    } catch (err) {
      if (err.status === 404) notFound();
      else if (err.status !== 401) show("Something went wrong", alertBox(err.message));
    }
    return;
  }
  if (await ensureSession()) header();
  notFound();
}

// The one not-found page: for a missing id and for another clinic's alike.
function notFound() {
  show("Not found", h("p", {}, "There is nothing here. It may have been deleted, or the link is wrong."),
    h("p", {}, h("a", { href: "/" }, "Back to Today")));
}

// ---- the header: clinic switcher, navigation, sign out ----

const NAV = [
  ["/", "Today"], ["/live", "Live"], ["/calls", "Calls"], ["/appointments", "Appointments"],
  ["/contacts", "Contacts"], ["/dnc", "Do not call"], ["/knowledge-base", "Knowledge base"],
  ["/settings", "Agent"], ["/members", "Members"],
  ["/integrations", "Integrations", "admin"], ["/access-log", "Access log", "admin"],
  ["/security", "Security", "admin"],
];

function activeRole() {
  const s = app.session;
  const org = s && s.orgs.find((o) => o.org_id === s.active_org);
  return org ? org.role : null;
}

function header() {
  const s = app.session;
  const top = document.getElementById("top");
  top.hidden = false;
  const select = h("select", { id: "clinic", "aria-label": "Clinic" },
    s.orgs.map((o) => h("option", { value: o.org_id, selected: o.org_id === s.active_org },
      `${o.name} (${o.role})`)));
  select.addEventListener("change", async () => {
    app.session = await api("POST", "/auth/session/org", { org_id: select.value });
    render();
  });
  const current = location.pathname;
  top.replaceChildren(
    h("a", { class: "brand", href: "/" }, "Voxanne"),
    s.orgs.length ? select : h("span", { class: "muted" }, "No clinic yet"),
    h("span", { class: "muted" }, s.display_name || s.email),
    h("button", {
      type: "button", class: "secondary", onclick: async () => {
        await api("POST", "/auth/sign-out");
        app.session = null;
        go("/sign-in");
      },
    }, "Sign out"),
    h("nav", { "aria-label": "Main" }, NAV.filter(([, , who]) => !who || ["owner", "admin"].includes(activeRole()))
      .map(([href, label]) => h("a", {
      href,
      "aria-current": (href === "/" ? current === "/" : current.startsWith(href)) ? "page" : null,
    }, label))),
  );
}

// ---- signing in, invitations, password resets ----

route("/sign-in", async (_, query) => {
  const next = query.get("next") || "/";
  const target = next.startsWith("/") && !next.startsWith("//") ? next : "/";
  const signIn = form([
    field("email", "Email address", { type: "email", autocomplete: "username", required: true }),
    field("password", "Password", { type: "password", autocomplete: "current-password", required: true }),
  ], "Sign in", async (data) => {
    app.session = await api("POST", "/auth/sign-in", {
      email: data.get("email"), password: data.get("password"),
    });
    go(target);
  });
  const card = h("div", { class: "card narrow" }, signIn,
    h("p", {}, h("a", { href: "/reset-password" }, "Forgot your password?")));
  show("Sign in to Voxanne", card);
  let demo = [];
  try { demo = await api("GET", "/auth/demo"); } catch (_) { /* not demo mode */ }
  if (demo.length) {
    card.append(h("div", { class: "demo" }, h("h2", {}, "Demo"), demo.map((u) =>
      h("button", {
        type: "button", class: "secondary", onclick: async () => {
          app.session = await api("POST", "/auth/demo", { user_id: u.user_id });
          go(target);
        },
      }, `Sign in as ${u.label}`))),
    h("p", {}, h("a", { href: "/outbox" }, "Mail the server would have sent")));
  }
}, { public: true });

route("/invitation", async () => {
  const token = location.hash.slice(1);
  loading("Invitation");
  let info;
  try {
    info = await api("POST", "/auth/invitation", { token });
  } catch (err) {
    return show("Invitation", alertBox("This invitation link is unknown or no longer works. Ask for a new one."));
  }
  if (!info.usable) {
    return show("Invitation", alertBox(`This invitation to ${info.org_name} has been used or has expired. Ask for a new one.`));
  }
  const about = h("p", {}, `You are invited to join ${info.org_name} as ${info.role}, as ${info.email}.`);
  const session = await ensureSession();
  if (session) {
    const join = form([], `Join ${info.org_name} as ${session.email}`, async () => {
      const joined = await api("POST", "/auth/invitation/accept", { token });
      app.session = await api("POST", "/auth/session/org", { org_id: joined.org_id });
      go("/");
    });
    return show("Invitation", h("div", { class: "card narrow" }, about, join));
  }
  const create = form([
    field("display_name", "Your name", { autocomplete: "name", required: true }),
    field("password", "Choose a password (10 characters or more)", {
      type: "password", autocomplete: "new-password", minlength: 10, required: true,
    }),
  ], "Create my account and join", async (data) => {
    app.session = await api("POST", "/auth/invitation/accept", {
      token, display_name: data.get("display_name"), password: data.get("password"),
    });
    go("/");
  });
  show("Invitation", h("div", { class: "card narrow" }, about, create,
    h("p", { class: "muted" }, "Already have an account with this address? ",
      h("a", { href: `/sign-in?next=${encodeURIComponent("/invitation#" + token)}` }, "Sign in"),
      " and open the link again.")));
}, { public: true });

route("/reset-password", async () => {
  const token = location.hash.slice(1);
  if (!token) {
    const done = h("div", { "aria-live": "polite" });
    const ask = form([field("email", "Email address", { type: "email", autocomplete: "username" })],
      "Mail me a link", async (data) => {
        await api("POST", "/auth/password-reset", { email: data.get("email") });
        done.replaceChildren(h("p", { class: "notice" },
          "If the address has an account, a link is on its way. It works once, for an hour."));
      });
    return show("Reset your password", h("div", { class: "card narrow" }, ask, done));
  }
  const choose = form([field("password", "New password (10 characters or more)", {
    type: "password", autocomplete: "new-password", minlength: 10,
  })], "Set the password", async (data) => {
    await api("POST", "/auth/password-reset/confirm", { token, password: data.get("password") });
    show("Password changed", h("p", { class: "notice" }, "Your password is changed. "),
      h("p", {}, h("a", { href: "/sign-in" }, "Sign in")));
  });
  show("Choose a new password", h("div", { class: "card narrow" }, choose));
}, { public: true });

route("/outbox", async () => {
  const mails = await api("GET", "/auth/outbox");
  show("Outbox (demo mode)",
    h("p", { class: "muted" }, "Without VOXANNE_SMTP_URL, mail is kept here instead of sent."),
    mails.length ? mails.map((m) => h("div", { class: "card" },
      h("h2", {}, m.subject), h("p", { class: "muted" }, `To ${m.to}`),
      h("pre", { class: "transcript" }, m.body)))
      : h("p", {}, "No mail yet."));
}, { public: true });

// ---- Today ----

route("/", async () => {
  loading("Today");
  const now = new Date();
  const today = new Date(now.getFullYear(), now.getMonth(), now.getDate());
  const week = new Date(today.getTime() - 6 * 86400000);
  const [calls, booked, upcoming] = await Promise.all([
    all(`/api/v1/calls?from=${encodeURIComponent(week.toISOString())}`),
    all(`/api/v1/appointments?from=${encodeURIComponent(week.toISOString())}`),
    api("GET", `/api/v1/appointments?from=${encodeURIComponent(now.toISOString())}&limit=10`),
  ]);
  const inToday = calls.filter((c) => new Date(c.started_at) >= today);
  const missed = calls.filter((c) => ["missed", "failed"].includes(c.status));
  const timed = calls.filter((c) => c.duration_seconds);
  const average = timed.length
    ? Math.round(timed.reduce((s, c) => s + c.duration_seconds, 0) / timed.length) : null;
  const made = booked.filter((a) => new Date(a.created_at) >= week);
  const byAgent = made.filter((a) => a.call_id).length;
  const stat = (label, value) => h("div", { class: "stat" }, h("b", {}, value), label);
  const days = [];
  for (let i = 0; i < 7; i++) {
    const d = new Date(week.getTime() + i * 86400000);
    const next = new Date(d.getTime() + 86400000);
    const of = calls.filter((c) => new Date(c.started_at) >= d && new Date(c.started_at) < next);
    days.push({ label: d.toLocaleDateString(undefined, { weekday: "short" }), total: of.length,
      missed: of.filter((c) => ["missed", "failed"].includes(c.status)).length });
  }
  show("Today",
    h("div", { class: "stats" },
      stat("calls today", inToday.length),
      stat("calls this week", calls.length),
      stat("missed this week", missed.length),
      stat("average call", average === null ? "–" : seconds(average)),
      stat("booked by the agent", byAgent),
      stat("booked by staff", made.length - byAgent)),
    h("h2", {}, "Calls this week"), barChart(days),
    h("h2", {}, "Next appointments"),
    upcoming.data.length
      ? h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "When"), h("th", {}, "With"), h("th", {}, "Status"))),
        h("tbody", {}, upcoming.data.map((a) => h("tr", {},
          h("td", {}, when(a.starts_at)), h("td", {}, a.resource), h("td", {}, badge(a.status))))))
      : h("p", { class: "muted" }, "No appointments coming up."));
});

// A bar a day: answered calls, and the missed ones on top; the numbers are in its text too.
function barChart(days) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = (tag, attrs, ...kids) => {
    const el = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    for (const k of kids) el.append(k instanceof Node ? k : document.createTextNode(String(k)));
    return el;
  };
  const max = Math.max(1, ...days.map((d) => d.total));
  const width = 420, height = 140, bar = width / days.length;
  const summary = days.map((d) => `${d.label} ${d.total} (${d.missed} missed)`).join(", ");
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height + 20}`, role: "img", class: "chart",
    "aria-label": `Calls a day this week: ${summary}` });
  days.forEach((d, i) => {
    const x = i * bar + 8, w = bar - 16;
    const total = (d.total / max) * height, missedH = (d.missed / max) * height;
    chart.append(
      svg("rect", { x, y: height - total + missedH, width: w, height: total - missedH, class: "answered" }),
      svg("rect", { x, y: height - total, width: w, height: missedH, class: "missed" }),
      svg("text", { x: x + w / 2, y: height + 15, "text-anchor": "middle" }, d.label),
      svg("text", { x: x + w / 2, y: Math.max(12, height - total - 4), "text-anchor": "middle" }, d.total));
  });
  return h("figure", { class: "card" }, chart, h("figcaption", { class: "muted" }, "Blue: answered; red: missed."));
}

// ---- Live: calls in progress, their transcript as it is spoken ----

route("/live", async () => {
  const list = h("div", { "aria-live": "polite" }, h("p", { role: "status" }, "Connecting…"));
  const ended = h("ul", {});
  show("Live calls", h("p", { class: "muted" }, "Calls in progress appear here as they start, with what is said."),
    list, h("h2", {}, "Just ended"), ended);
  const shown = new Map();
  const source = new EventSource("/api/v1/live");
  app.live = source;
  source.addEventListener("calls", (e) => {
    const { calls } = JSON.parse(e.data);
    const now = new Set(calls.map((c) => c.id));
    for (const [id, c] of shown) {
      if (!now.has(id)) {
        shown.delete(id);
        ended.prepend(h("li", {}, h("a", { href: `/calls/${id}` },
          `${c.direction === "inbound" ? c.from_number : c.to_number}, from ${clock(c.started_at)}`), " — see the call"));
      }
    }
    for (const c of calls) shown.set(c.id, c);
    list.replaceChildren(...(calls.length ? calls.map((c) => h("section", { class: "card live-call", "data-call": c.id },
      h("h2", {}, `${c.direction === "inbound" ? c.from_number : c.to_number} `, badge(c.status),
        h("span", { class: "muted" }, ` since ${clock(c.started_at)}`)),
      c.lines.length ? h("ol", { class: "lines" }, c.lines.map((l) => h("li", { class: l.role },
        h("b", {}, l.role === "user" ? "Caller: " : "Agent: "), l.text)))
        : h("p", { class: "muted" }, "Nothing said yet.")))
      : [h("p", { class: "muted" }, "No calls in progress.")]));
  });
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) list.prepend(alertBox("The live view lost its connection. Reload the page."));
  });
});

// ---- Calls ----

function callRow(c) {
  return h("tr", {},
    h("td", {}, h("a", { href: `/calls/${c.id}` }, when(c.started_at))),
    h("td", {}, c.direction === "inbound" ? c.from_number : c.to_number),
    h("td", { class: "optional" }, c.direction),
    h("td", {}, badge(c.status)),
    h("td", { class: "optional" }, seconds(c.duration_seconds)));
}

route("/calls", async (_, query) => {
  const filters = h("form", { class: "row", role: "search", "aria-label": "Filter calls" },
    h("div", {}, h("label", { for: "f-direction" }, "Direction"),
      h("select", { id: "f-direction", name: "direction" },
        ["", "inbound", "outbound"].map((v) => h("option", { value: v, selected: query.get("direction") === v }, v || "Any")))),
    h("div", {}, h("label", { for: "f-status" }, "Status"),
      h("select", { id: "f-status", name: "status" },
        ["", "completed", "missed", "voicemail", "failed", "in_progress", "ringing", "queued"]
          .map((v) => h("option", { value: v, selected: query.get("status") === v }, v ? v.replace("_", " ") : "Any")))),
    h("div", {}, h("label", { for: "f-from" }, "From"),
      h("input", { id: "f-from", name: "from", type: "date", value: query.get("from") || "" })),
    h("div", {}, h("label", { for: "f-to" }, "To"),
      h("input", { id: "f-to", name: "to", type: "date", value: query.get("to") || "" })),
    h("div", {}, h("button", { type: "submit" }, "Filter")));
  filters.addEventListener("submit", (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(filters)) if (v) q.set(k, v);
    go(`/calls${q.toString() ? "?" + q : ""}`);
  });
  const tbody = h("tbody", {});
  const table = h("table", {}, h("thead", {}, h("tr", {},
    h("th", { scope: "col" }, "When"), h("th", { scope: "col" }, "Number"),
    h("th", { scope: "col", class: "optional" }, "Direction"), h("th", { scope: "col" }, "Status"),
    h("th", { scope: "col", class: "optional" }, "Length"))), tbody);
  const more = h("button", { type: "button", class: "secondary" }, "Load more");
  const status = h("p", { role: "status" }, "Loading…");
  show("Calls", filters, status, table, more);
  more.hidden = true;
  const q = new URLSearchParams();
  for (const k of ["direction", "status", "from", "to"]) if (query.get(k)) q.set(k, query.get(k));
  q.set("limit", "25");
  let cursor = null;
  async function page() {
    if (cursor) q.set("cursor", cursor);
    const r = await api("GET", `/api/v1/calls?${q}`);
    tbody.append(...r.data.map(callRow));
    cursor = r.next_cursor;
    more.hidden = !cursor;
    status.textContent = tbody.children.length ? "" : "No calls match.";
  }
  more.addEventListener("click", async () => {
    more.disabled = true;
    try { await page(); } finally { more.disabled = false; }
  });
  await page();
});

route("/calls/:id", async ({ id }) => {
  loading("Call");
  const c = await api("GET", `/api/v1/calls/${encodeURIComponent(id)}`);
  const made = await api("GET", `/api/v1/appointments?call_id=${c.id}&limit=10`);
  const facts = h("dl", { class: "card" },
    h("dt", {}, "When"), h("dd", {}, when(c.started_at)),
    h("dt", {}, "From"), h("dd", {}, c.from_number),
    h("dt", {}, "To"), h("dd", {}, c.to_number),
    h("dt", {}, "Status"), h("dd", {}, badge(c.status)),
    h("dt", {}, "Length"), h("dd", {}, seconds(c.duration_seconds) || "–"),
    h("dt", {}, "Recording"), h("dd", {}, badge(c.recording_status)));
  const recording = c.recording_status === "stored"
    ? h("audio", { controls: true, preload: "metadata", src: `/api/v1/calls/${c.id}/recording`, "aria-label": "Call recording" })
    : h("p", { class: "muted" }, "No recording stored.");
  show(`Call of ${when(c.started_at)}`,
    h("p", {}, h("a", { href: "/calls" }, "← All calls")),
    facts,
    h("h2", {}, "Recording"), recording,
    h("h2", {}, "Summary"), h("p", {}, c.summary || "No summary."),
    h("h2", {}, "Appointment made"), appointmentTable(made.data),
    c.contact_id ? h("p", {}, h("a", { href: `/contacts/${c.contact_id}` }, "The caller's contact page")) : null,
    h("h2", {}, "Transcript"),
    c.transcript ? h("pre", { class: "transcript" }, c.transcript) : h("p", { class: "muted" }, "No transcript."));
});

// ---- Appointments: a week per practitioner (or the whole clinic) ----

function mondayOf(d) {
  const m = new Date(d.getFullYear(), d.getMonth(), d.getDate());
  m.setDate(m.getDate() - ((m.getDay() + 6) % 7));
  return m;
}

function isoDay(d) {
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

function localInput(iso) {
  const d = new Date(iso);
  return `${isoDay(d)}T${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}

function clock(iso) {
  return new Date(iso).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" });
}

async function all(path) {
  const out = [];
  let cursor = null;
  for (let i = 0; i < 20; i++) {
    const sep = path.includes("?") ? "&" : "?";
    const r = await api("GET", `${path}${sep}limit=100${cursor ? "&cursor=" + encodeURIComponent(cursor) : ""}`);
    out.push(...r.data);
    cursor = r.next_cursor;
    if (!cursor) break;
  }
  return out;
}

route("/appointments", async (_, query) => {
  loading("Appointments");
  const week = query.get("week") ? mondayOf(new Date(query.get("week") + "T00:00")) : mondayOf(new Date());
  const end = new Date(week); end.setDate(end.getDate() + 7);
  const who = query.get("resource") || "";
  const [practitioners, appointments, holds, sms] = await Promise.all([
    all("/api/v1/practitioners"),
    all(`/api/v1/appointments?from=${encodeURIComponent(week.toISOString())}&to=${encodeURIComponent(end.toISOString())}`),
    all("/api/v1/appointment-holds"),
    all("/api/v1/sms-confirmations"),
  ]);
  const smsOf = new Map();
  for (const m of sms) if (m.appointment_id && !smsOf.has(m.appointment_id)) smsOf.set(m.appointment_id, m);
  const mine = (x) => !who || x.resource === who;
  const nav = (w, r) => {
    const q = new URLSearchParams();
    if (w) q.set("week", isoDay(w));
    if (r) q.set("resource", r);
    return `/appointments?${q}`;
  };
  const prev = new Date(week); prev.setDate(prev.getDate() - 7);
  const picker = h("select", { id: "f-resource", "aria-label": "Whose diary" },
    h("option", { value: "", selected: !who }, "The whole clinic"),
    practitioners.map((p) => h("option", { value: p.resource, selected: who === p.resource }, p.name)));
  picker.addEventListener("change", () => go(nav(week, picker.value)));
  const days = [];
  for (let i = 0; i < 7; i++) {
    const day = new Date(week); day.setDate(day.getDate() + i);
    const next = new Date(day); next.setDate(next.getDate() + 1);
    const inDay = (x) => new Date(x.starts_at) >= day && new Date(x.starts_at) < next && mine(x);
    const items = [
      ...appointments.filter(inDay).map((a) => ({ kind: "appointment", a })),
      ...holds.filter(inDay).map((a) => ({ kind: "hold", a })),
    ].sort((x, y) => new Date(x.a.starts_at) - new Date(y.a.starts_at));
    days.push(h("section", { class: "day", "aria-label": day.toLocaleDateString(undefined, { weekday: "long", day: "numeric", month: "long" }) },
      h("h2", {}, day.toLocaleDateString(undefined, { weekday: "short", day: "numeric", month: "short" })),
      items.length ? items.map((it) => appointmentCard(it, smsOf)) : h("p", { class: "muted" }, "Free")));
  }
  const newForm = form([
    h("div", { class: "row" },
      h("div", {}, ...field("starts_at", "Starts", { type: "datetime-local", required: true })),
      h("div", {}, ...field("minutes", "Minutes", { type: "number", min: 5, max: 480, value: 30 })),
      h("div", {}, h("label", { for: "f-new-resource" }, "With"),
        h("select", { id: "f-new-resource", name: "resource" },
          h("option", { value: "default" }, "The clinic (default)"),
          practitioners.map((p) => h("option", { value: p.resource, selected: who === p.resource }, p.name))))),
    ...field("notes", "Notes"),
  ], "Book", async (data) => {
    const start = new Date(data.get("starts_at"));
    if (isNaN(start)) throw new Error("Choose when it starts.");
    const minutes = Number(data.get("minutes") || 30);
    await api("POST", "/api/v1/appointments", {
      resource: data.get("resource"),
      starts_at: start.toISOString(),
      ends_at: new Date(start.getTime() + minutes * 60000).toISOString(),
      notes: data.get("notes") || undefined,
    });
    render();
  });
  show("Appointments",
    h("div", { class: "row" },
      h("div", {}, h("label", { for: "f-resource" }, "Whose diary"), picker),
      h("div", {}, h("a", { class: "button secondary", href: nav(prev, who) }, "← Previous week"), " ",
        h("a", { class: "button secondary", href: nav(null, who) }, "This week"), " ",
        h("a", { class: "button secondary", href: nav(end, who) }, "Next week →"))),
    h("p", { class: "muted" }, `Week of ${week.toLocaleDateString(undefined, { dateStyle: "long" })}`),
    h("div", { class: "week" }, days),
    h("h2", {}, "New appointment"), h("div", { class: "card" }, newForm));
});

function appointmentCard({ kind, a }, smsOf) {
  const sms = kind === "appointment" ? smsOf.get(a.id) : null;
  const card = h("div", { class: `slot ${kind} ${a.status || ""}` },
    h("b", {}, `${clock(a.starts_at)}–${clock(a.ends_at)}`), " ", a.resource, " ",
    kind === "hold" ? badge("held") : badge(a.status),
    sms ? h("div", { class: "muted" }, "SMS: ", badge(sms.status)) : null,
    a.notes ? h("div", {}, a.notes) : null);
  if (kind === "appointment" && a.status === "booked") {
    const moveForm = form([
      ...field(`move-${a.id}`, "Move to", { type: "datetime-local", value: localInput(a.starts_at) }),
    ], "Move", async (data) => {
      const start = new Date(data.get(`move-${a.id}`));
      if (isNaN(start)) throw new Error("Choose the new time.");
      const length = new Date(a.ends_at) - new Date(a.starts_at);
      await api("PATCH", `/api/v1/appointments/${a.id}`, {
        starts_at: start.toISOString(), ends_at: new Date(start.getTime() + length).toISOString(),
      });
      render();
    });
    moveForm.classList.add("move");
    card.append(h("details", {}, h("summary", {}, "Move or cancel"), moveForm,
      h("button", {
        type: "button", class: "secondary", onclick: async () => {
          await api("POST", `/api/v1/appointments/${a.id}/cancel`);
          render();
        },
      }, "Cancel appointment")));
  }
  return card;
}

// ---- Contacts ----

route("/contacts", async (_, query) => {
  const search = h("form", { role: "search", class: "row" },
    h("div", {}, h("label", { for: "f-q" }, "Search by name or phone"),
      h("input", { id: "f-q", name: "q", type: "search", value: query.get("q") || "" })),
    h("div", {}, h("button", { type: "submit" }, "Search")));
  search.addEventListener("submit", (e) => {
    e.preventDefault();
    const q = new FormData(search).get("q");
    go(q ? `/contacts?q=${encodeURIComponent(q)}` : "/contacts");
  });
  const status = h("p", { role: "status" }, "Loading…");
  show("Contacts", search, status);
  const q = query.get("q");
  const r = await api("GET", `/api/v1/contacts?limit=50${q ? "&q=" + encodeURIComponent(q) : ""}`);
  status.textContent = r.data.length ? "" : "No contacts.";
  if (r.data.length) {
    main().append(h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Phone"),
      h("th", { class: "optional" }, "Email"))),
      h("tbody", {}, r.data.map((c) => h("tr", {},
        h("td", {}, h("a", { href: `/contacts/${c.id}` }, c.name)), h("td", {}, c.phone || ""),
        h("td", { class: "optional" }, c.email || ""))))));
  }
});

route("/contacts/:id", async ({ id }) => {
  loading("Contact");
  const c = await api("GET", `/api/v1/contacts/${encodeURIComponent(id)}`);
  const [calls, appointments] = await Promise.all([
    api("GET", `/api/v1/calls?contact_id=${c.id}&limit=50`),
    api("GET", `/api/v1/appointments?contact_id=${c.id}&limit=50`),
  ]);
  show(c.name, h("p", {}, h("a", { href: "/contacts" }, "← All contacts")),
    h("dl", { class: "card" }, h("dt", {}, "Phone"), h("dd", {}, c.phone || "–"),
      h("dt", {}, "Email"), h("dd", {}, c.email || "–"),
      h("dt", {}, "Notes"), h("dd", {}, c.notes || "–")),
    h("h2", {}, "Calls"),
    calls.data.length ? h("table", {}, h("tbody", {}, calls.data.map(callRow)))
      : h("p", { class: "muted" }, "No calls."),
    h("h2", {}, "Appointments"), appointmentTable(appointments.data),
    ["owner", "admin"].includes(activeRole())
      ? h("p", {}, h("a", { href: `/access-log?patient=${c.id}` }, "Who has seen this patient's data")) : null);
});

function appointmentTable(list) {
  return list.length
    ? h("table", {}, h("tbody", {}, list.map((a) => h("tr", {}, h("td", {}, when(a.starts_at)),
      h("td", {}, a.resource), h("td", {}, badge(a.status)), h("td", { class: "optional" }, a.notes || "")))))
    : h("p", { class: "muted" }, "No appointments.");
}

// ---- Members and invitations ----

route("/members", async () => {
  loading("Members");
  const admin = activeRole() === "owner" || activeRole() === "admin";
  const members = await api("GET", "/api/v1/members?limit=100");
  const content = [h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Member"), h("th", {}, "Role"))),
    h("tbody", {}, members.data.map((m) => h("tr", {},
      h("td", {}, m.user_id === app.session.user_id ? "You" : (m.display_name || m.email || m.user_id),
        m.email && m.display_name ? h("div", { class: "muted" }, m.email) : null),
      h("td", {}, m.role)))))];
  if (admin) {
    const sent = h("div", { "aria-live": "polite" });
    const invite = form([
      field("email", "Email address", { type: "email", required: true }),
      h("label", { for: "f-role" }, "Role"),
      h("select", { id: "f-role", name: "role" }, ["staff", "admin", "owner"].map((r) => h("option", { value: r }, r))),
    ], "Send invitation", async (data) => {
      const inv = await api("POST", "/api/v1/invitations", { email: data.get("email"), role: data.get("role") });
      sent.replaceChildren(h("p", { class: "notice" }, `Invitation sent to ${inv.email}. The link (it works once): `,
        h("code", {}, inv.link)));
    });
    const invitations = await api("GET", "/api/v1/invitations?limit=50");
    content.push(h("h2", {}, "Invite someone"), h("div", { class: "card" }, invite, sent),
      h("h2", {}, "Invitations"),
      invitations.data.length ? h("table", {}, h("tbody", {}, invitations.data.map((i) => h("tr", {},
        h("td", {}, i.email), h("td", {}, i.role),
        h("td", {}, i.accepted_at ? `joined ${when(i.accepted_at)}` : `until ${when(i.expires_at)}`)))))
        : h("p", { class: "muted" }, "None yet."));
  }
  show("Members", ...content);
});

// ---- Do-not-call list ----

route("/dnc", async () => {
  loading("Do-not-call list");
  const admin = ["owner", "admin"].includes(activeRole());
  const entries = await all("/api/v1/dnc");
  const add = form([
    h("div", { class: "row" }, h("div", {}, ...field("phone", "Phone number", { type: "tel", required: true })),
      h("div", {}, ...field("reason", "Reason"))),
  ], "Add to the list", async (data) => {
    await api("POST", "/api/v1/dnc", { phone: data.get("phone"), reason: data.get("reason") || undefined });
    render();
  });
  show("Do-not-call list", h("p", { class: "muted" }, "The agent never calls these numbers."),
    h("div", { class: "card" }, add),
    entries.length ? h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Number"), h("th", {}, "Reason"),
      h("th", { class: "optional" }, "Added"), admin ? h("th", {}, "") : null)),
      h("tbody", {}, entries.map((e) => h("tr", {}, h("td", {}, e.phone), h("td", {}, e.reason || ""),
        h("td", { class: "optional" }, when(e.created_at)),
        admin ? h("td", {}, h("button", {
          type: "button", class: "secondary", "aria-label": `Remove ${e.phone}`, onclick: async () => {
            await api("DELETE", `/api/v1/dnc/${e.id}`);
            render();
          },
        }, "Remove")) : null))))
      : h("p", { class: "muted" }, "No numbers on the list."));
});

// ---- Knowledge base ----

route("/knowledge-base", async (_, query) => {
  loading("Knowledge base");
  const admin = ["owner", "admin"].includes(activeRole());
  const docs = await all("/api/v1/knowledge-base/documents");
  const search = h("form", { role: "search", class: "row" },
    h("div", {}, h("label", { for: "f-kb-q" }, "What would the agent read for…"),
      h("input", { id: "f-kb-q", name: "q", type: "search", value: query.get("q") || "" })),
    h("div", {}, h("button", { type: "submit" }, "Search")));
  search.addEventListener("submit", (e) => {
    e.preventDefault();
    const q = new FormData(search).get("q");
    go(q ? `/knowledge-base?q=${encodeURIComponent(q)}` : "/knowledge-base");
  });
  const hits = h("div", { "aria-live": "polite" });
  if (query.get("q")) {
    // The agent's search_knowledge_base reads the best three passages.
    const r = await api("GET", `/api/v1/knowledge-base/search?q=${encodeURIComponent(query.get("q"))}&limit=3`);
    hits.append(h("h2", {}, "What the agent would read (the best three passages)"), r.data.length
      ? r.data.map((hit) => h("div", { class: "card" }, h("b", {}, hit.title), h("p", {}, hit.content)))
      : h("p", { class: "muted" }, "Nothing matches: the agent would say it does not know."));
  }
  const content = [search, hits, h("h2", {}, "Documents"),
    docs.length ? h("table", {}, h("tbody", {}, docs.map((d) => h("tr", {}, h("td", {}, d.title),
      h("td", { class: "optional" }, `${d.chunk_count} passages`), h("td", { class: "optional" }, when(d.updated_at)),
      admin ? h("td", {}, h("button", {
        type: "button", class: "secondary", "aria-label": `Delete ${d.title}`, onclick: async () => {
          await api("DELETE", `/api/v1/knowledge-base/documents/${d.id}`);
          render();
        },
      }, "Delete")) : null))))
      : h("p", { class: "muted" }, "No documents yet.")];
  if (admin) {
    content.push(h("h2", {}, "Add a document"), h("div", { class: "card" }, form([
      ...field("title", "Title", { required: true }),
      h("label", { for: "f-body" }, "Text"), h("textarea", { id: "f-body", name: "body", rows: 6, required: true }),
    ], "Add", async (data) => {
      await api("POST", "/api/v1/knowledge-base/documents", { title: data.get("title"), body: data.get("body") });
      render();
    })));
  }
  show("Knowledge base", ...content);
});

// ---- Agent settings ----

const DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

function hoursText(hours) {
  return DAYS.map((d) => `${d} ${(hours[d] || []).map(([a, b]) => `${a}-${b}`).join(", ") || "closed"}`).join("\n");
}

function parseHours(text) {
  const out = {};
  for (const line of text.split("\n").map((l) => l.trim()).filter(Boolean)) {
    const [day, ...rest] = line.split(/\s+/);
    const spans = rest.join(" ");
    out[day] = spans === "closed" || !spans ? [] : spans.split(",").map((s) => s.trim().split("-"));
  }
  return out;
}

route("/settings", async () => {
  loading("Agent settings");
  const admin = ["owner", "admin"].includes(activeRole());
  const c = await api("GET", "/api/v1/agent-configuration");
  const fields = [
    h("label", { for: "f-greeting" }, "Greeting"),
    h("textarea", { id: "f-greeting", name: "greeting", rows: 2 }, c.greeting),
    ...field("voice", "Voice (provider:voiceId)", { value: c.voice }),
    h("label", { for: "f-hours" }, "Opening hours (one line a day: mon 09:00-12:00, 13:00-17:00)"),
    h("textarea", { id: "f-hours", name: "hours", rows: 7 }, hoursText(c.opening_hours)),
    ...field("time_zone", "Time zone", { value: c.time_zone }),
    ...field("transfer_number", "Transfer number", { type: "tel", value: c.transfer_number || "" }),
    h("label", {}, h("input", { type: "checkbox", name: "hipaa_enabled", checked: c.hipaa_enabled, style: "width:auto" }),
      " HIPAA mode (the voice platform keeps no recording or transcript)"),
  ];
  if (!admin) {
    return show("Agent settings", h("p", { class: "muted" }, "Only admins change these."),
      h("pre", { class: "transcript" }, `${c.greeting}\n\nVoice: ${c.voice}\nTime zone: ${c.time_zone}\n\n${hoursText(c.opening_hours)}`));
  }
  const saved = h("div", { "aria-live": "polite" });
  show("Agent settings", h("div", { class: "card" }, form(fields, "Save", async (data) => {
    await api("PUT", "/api/v1/agent-configuration", {
      greeting: data.get("greeting"), voice: data.get("voice"), time_zone: data.get("time_zone"),
      opening_hours: parseHours(data.get("hours")),
      transfer_number: data.get("transfer_number") || null,
      hipaa_enabled: data.get("hipaa_enabled") === "on",
    });
    saved.replaceChildren(h("p", { class: "notice" }, "Saved."));
  }), saved));
});

// ---- Integrations: providers (secrets write-only) and calendars ----

route("/integrations", async () => {
  loading("Integrations");
  const [providers, calendars] = await Promise.all([
    api("GET", "/api/v1/integrations"), all("/api/v1/calendar-connections"),
  ]);
  const cards = providers.data.map((p) => {
    const secrets = Object.entries(p.secrets || {});
    return h("div", { class: "card" }, h("h2", {}, p.provider, " ", badge(p.configured ? "configured" : "not set up")),
      secrets.length ? h("p", {}, "Secrets: ", secrets.map(([k, v]) => `${k} ${v}`).join(", ")) : null,
      p.secrets_error ? alertBox(p.secrets_error) : null,
      form([
        h("label", { for: `f-config-${p.provider}` }, "Settings (JSON)"),
        h("textarea", { id: `f-config-${p.provider}`, name: "config", rows: 3 }, JSON.stringify(p.config || {})),
        h("div", { class: "row" },
          h("div", {}, ...field(`secret-name-${p.provider}`, "Secret name", { name: "secret_name" })),
          h("div", {}, ...field(`secret-value-${p.provider}`, "Secret value (never shown again)",
            { name: "secret_value", type: "password", autocomplete: "off" }))),
      ], `Save ${p.provider}`, async (data) => {
        let config;
        try { config = JSON.parse(data.get("config") || "{}"); } catch (_) { throw new Error("The settings are not valid JSON."); }
        const body = { config };
        if (data.get("secret_name") && data.get("secret_value")) body.secrets = { [data.get("secret_name")]: data.get("secret_value") };
        await api("PUT", `/api/v1/integrations/${p.provider}`, body);
        render();
      }));
  });
  show("Integrations", ...cards, h("h2", {}, "Calendars"),
    calendars.length ? h("table", {}, h("tbody", {}, calendars.map((c) => h("tr", {},
      h("td", {}, c.provider), h("td", {}, c.account_email), h("td", {}, c.resource || ""),
      h("td", {}, badge(c.status || "active")))))) : h("p", { class: "muted" }, "No calendar linked."));
});

// ---- The access log (admins) ----

const SUBJECTS = {
  contact: "contact", call: "call", transcript: "transcript", recording: "recording",
  appointment: "appointment", hold: "hold", inbox_message: "message", sms: "SMS",
  consent: "consent", lead: "lead", campaign_target: "campaign target", cold_call: "campaign call",
  legal_hold: "legal hold", access_log: "access log",
};

route("/access-log", async (_, query) => {
  loading("Access log");
  const members = await api("GET", "/api/v1/members?limit=100");
  const names = new Map(members.data.map((m) => [m.user_id, m.display_name || m.email || m.user_id]));
  const patient = query.get("patient");
  const patientName = patient
    ? await api("GET", `/api/v1/contacts/${encodeURIComponent(patient)}`).then((c) => c.name, () => null)
    : null;
  const filters = h("form", { class: "row", role: "search", "aria-label": "Filter the access log" },
    patient ? h("input", { type: "hidden", name: "patient", value: patient }) : null,
    h("div", {}, h("label", { for: "f-user" }, "Member"),
      h("select", { id: "f-user", name: "user" },
        h("option", { value: "" }, "Anyone"),
        members.data.map((m) => h("option", { value: m.user_id, selected: query.get("user") === m.user_id },
          names.get(m.user_id))))),
    h("div", {}, h("label", { for: "f-from" }, "From"),
      h("input", { id: "f-from", name: "from", type: "date", value: query.get("from") || "" })),
    h("div", {}, h("label", { for: "f-to" }, "To"),
      h("input", { id: "f-to", name: "to", type: "date", value: query.get("to") || "" })),
    h("div", {}, h("button", { type: "submit" }, "Filter")));
  filters.addEventListener("submit", (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(filters)) if (v) q.set(k, v);
    go(`/access-log${q.toString() ? "?" + q : ""}`);
  });
  const q = new URLSearchParams();
  for (const k of ["patient", "user", "from", "to"]) if (query.get(k)) q.set(k, query.get(k));
  const exportLink = h("a", { href: `/api/v1/access-log/export${q.toString() ? "?" + q : ""}`, download: "access-log.csv" },
    "Export as CSV");
  const tbody = h("tbody", {});
  const table = h("table", {}, h("thead", {}, h("tr", {},
    h("th", { scope: "col" }, "When"), h("th", { scope: "col" }, "Who"), h("th", { scope: "col" }, "What"),
    h("th", { scope: "col", class: "optional" }, "How"), h("th", { scope: "col", class: "optional" }, "From"))), tbody);
  const more = h("button", { type: "button", class: "secondary" }, "Load more");
  const status = h("p", { role: "status" }, "Loading…");
  show("Access log",
    h("p", { class: "muted" }, patient
      ? [`Every read and change of ${patientName || "this patient"}'s data. `,
        h("a", { href: "/access-log" }, "The whole clinic")]
      : "Every read and change of patient data at this clinic: by members, the voice agent, background jobs and operators."),
    filters, h("p", {}, exportLink), status, table, more);
  more.hidden = true;
  q.set("limit", "50");
  const who = (r) => r.actor_kind === "user"
    ? (names.get(r.actor_id) || "a former member")
    : { agent: "the voice agent", system: "Voxanne", cli: "an operator" }[r.actor_kind] || r.actor_kind;
  let cursor = null;
  async function page() {
    if (cursor) q.set("cursor", cursor);
    const r = await api("GET", `/api/v1/access-log?${q}`);
    tbody.append(...r.data.map((e) => h("tr", {},
      h("td", {}, when(e.at)), h("td", {}, who(e)),
      h("td", {}, `${e.action} ${SUBJECTS[e.subject_kind] || e.subject_kind}`),
      h("td", { class: "optional" }, h("code", {}, e.via)),
      h("td", { class: "optional" }, e.client_addr || ""))));
    cursor = r.next_cursor;
    more.hidden = !cursor;
    status.textContent = tbody.children.length ? "" : "Nothing recorded.";
  }
  more.addEventListener("click", async () => {
    more.disabled = true;
    try { await page(); } finally { more.disabled = false; }
  });
  await page();
});

// ---- Security events (admins) ----

route("/security", async () => {
  loading("Security events");
  const r = await api("GET", "/api/v1/security-events?limit=100");
  show("Security events", h("p", { class: "muted" },
    "Refused attempts at this clinic: its ids asked for by another clinic, denied memberships, bad tokens and badly signed webhooks."),
    r.data.length ? h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "When"), h("th", {}, "What"), h("th", { class: "optional" }, "Route"))),
      h("tbody", {}, r.data.map((e) => h("tr", {}, h("td", {}, when(e.created_at)), h("td", {}, e.kind.replace(/_/g, " ")),
        h("td", { class: "optional" }, e.route || ""))))) : h("p", { class: "muted" }, "Nothing recorded."));
});

render();
