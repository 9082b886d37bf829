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
  m.replaceChildren(h("h1", {}, title), ...content);
  m.focus({ preventScroll: true });
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
  history.pushState(null, "", path);
  render();
}

document.addEventListener("click", (e) => {
  const a = e.target.closest && e.target.closest("a[href^='/']");
  if (!a || a.target || e.ctrlKey || e.metaKey || e.shiftKey || a.hasAttribute("download")) return;
  e.preventDefault();
  go(a.getAttribute("href"));
});
window.addEventListener("popstate", render);

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
  ["/", "Today"], ["/calls", "Calls"], ["/appointments", "Appointments"],
  ["/contacts", "Contacts"], ["/members", "Members"],
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
    h("nav", { "aria-label": "Main" }, NAV.map(([href, label]) => h("a", {
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
  const [calls, upcoming] = await Promise.all([
    api("GET", `/api/v1/calls?from=${encodeURIComponent(week.toISOString())}&limit=100`),
    api("GET", `/api/v1/appointments?from=${encodeURIComponent(now.toISOString())}&limit=10`),
  ]);
  const inToday = calls.data.filter((c) => new Date(c.started_at) >= today);
  const missed = calls.data.filter((c) => c.status === "missed" || c.status === "failed");
  const timed = calls.data.filter((c) => c.duration_seconds);
  const average = timed.length
    ? Math.round(timed.reduce((s, c) => s + c.duration_seconds, 0) / timed.length) : null;
  const stat = (label, value) => h("div", { class: "stat" }, h("b", {}, value), label);
  show("Today",
    h("div", { class: "stats" },
      stat("calls today", inToday.length),
      stat("calls this week", calls.data.length + (calls.next_cursor ? "+" : "")),
      stat("missed this week", missed.length),
      stat("average call", average === null ? "–" : seconds(average))),
    h("h2", {}, "Next appointments"),
    upcoming.data.length
      ? h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "When"), h("th", {}, "With"), h("th", {}, "Status"))),
        h("tbody", {}, upcoming.data.map((a) => h("tr", {},
          h("td", {}, when(a.starts_at)), h("td", {}, a.resource), h("td", {}, badge(a.status))))))
      : h("p", { class: "muted" }, "No appointments coming up."));
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
    h("h2", {}, "Transcript"),
    c.transcript ? h("pre", { class: "transcript" }, c.transcript) : h("p", { class: "muted" }, "No transcript."));
});

// ---- Appointments (list; the week view is next) ----

route("/appointments", async () => {
  loading("Appointments");
  const from = new Date(); from.setHours(0, 0, 0, 0);
  const r = await api("GET", `/api/v1/appointments?from=${encodeURIComponent(from.toISOString())}&limit=100`);
  show("Appointments",
    r.data.length
      ? h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "When"), h("th", {}, "With"),
        h("th", {}, "Status"), h("th", { class: "optional" }, "Notes"))),
        h("tbody", {}, r.data.map((a) => h("tr", {}, h("td", {}, when(a.starts_at)), h("td", {}, a.resource),
          h("td", {}, badge(a.status)), h("td", { class: "optional" }, a.notes || "")))))
      : h("p", { class: "muted" }, "No appointments from today on."));
});

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
  show(c.name, h("p", {}, h("a", { href: "/contacts" }, "← All contacts")),
    h("dl", { class: "card" }, h("dt", {}, "Phone"), h("dd", {}, c.phone || "–"),
      h("dt", {}, "Email"), h("dd", {}, c.email || "–"),
      h("dt", {}, "Notes"), h("dd", {}, c.notes || "–")));
});

// ---- Members and invitations ----

route("/members", async () => {
  loading("Members");
  const admin = activeRole() === "owner" || activeRole() === "admin";
  const members = await api("GET", "/api/v1/members?limit=100");
  const content = [h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Member"), h("th", {}, "Role"))),
    h("tbody", {}, members.data.map((m) => h("tr", {}, h("td", {}, m.user_id === app.session.user_id ? "You" : m.user_id),
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

render();
