// pair — the Spaces page, enhanced. Our own code, no dependencies. Every form here also works
// without this script (a POST, then a redirect with a message); with it, changes happen in place
// and the page keeps itself current by polling /web/spaces.json.
(function () {
  "use strict";

  var page = document.body.getAttribute("data-page");
  if (page !== "spaces") return;

  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var csrf = csrfMeta ? csrfMeta.getAttribute("content") : "";
  var pollMs = parseInt(document.body.getAttribute("data-poll-ms"), 10) || 3000;
  var tbody = document.querySelector("#spaces tbody");
  var tableWrap = document.getElementById("spaces-wrap");
  var empty = document.getElementById("empty");
  var count = document.getElementById("space-count");
  var flash = document.getElementById("flash");
  var dialog = document.getElementById("delete-dialog");
  var pendingDelete = null; // {id, name}

  function say(kind, text, focus) {
    flash.className = "flash " + kind;
    flash.textContent = text;
    flash.hidden = false;
    if (focus) flash.focus();
  }

  function rows() {
    return Array.prototype.slice.call(tbody.querySelectorAll("tr[data-space-id]"));
  }

  function rowById(id) {
    return rows().filter(function (tr) { return tr.getAttribute("data-space-id") === id; })[0] || null;
  }

  function refreshEmpty(heading) {
    var any = rows().length > 0;
    tableWrap.hidden = !any;
    empty.hidden = any;
    if (heading) {
      count.textContent = heading;
    } else {
      var n = rows().length;
      count.textContent = n === 0 ? "You have no Container Spaces yet."
        : n === 1 ? "You have one Container Space." : "You have " + n + " Container Spaces.";
    }
  }

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Accept": "application/json", "X-CSRF-Token": csrf },
      body: body || new URLSearchParams(),
    }).then(function (response) {
      if (response.status === 401) {
        window.location.assign("/signin?expired");
        throw new Error("signed out");
      }
      return response.json().then(function (data) {
        if (!response.ok) {
          var error = new Error(data.message || "The broker refused the request.");
          error.detail = data.detail || "";
          throw error;
        }
        return data;
      });
    });
  }

  function fromHtml(html) {
    var template = document.createElement("template");
    template.innerHTML = html.trim();
    return template.content.querySelector("tr");
  }

  function removeRow(tr) {
    var next = tr.nextElementSibling || tr.previousElementSibling;
    tr.remove();
    return next;
  }

  // -- delete ---------------------------------------------------------------------------------

  function openDelete(id, name, opener) {
    pendingDelete = { id: id, name: name, opener: opener };
    dialog.querySelector('[data-role="name"]').textContent = name;
    dialog.querySelector("form").setAttribute("action", "/spaces/" + encodeURIComponent(id) + "/delete");
    var error = dialog.querySelector('[data-role="error"]');
    error.hidden = true;
    error.textContent = "";
    dialog.querySelector('[data-action="confirm"]').disabled = false;
    dialog.showModal();
    dialog.querySelector('[data-action="cancel"]').focus();
  }

  function closeDelete() {
    var opener = pendingDelete && pendingDelete.opener;
    pendingDelete = null;
    if (dialog.open) dialog.close();
    if (opener && document.body.contains(opener)) opener.focus();
  }

  dialog.querySelector('[data-action="cancel"]').addEventListener("click", closeDelete);
  dialog.addEventListener("cancel", function (event) { // Escape
    event.preventDefault();
    closeDelete();
  });
  dialog.addEventListener("click", function (event) { // a click on the backdrop
    if (event.target === dialog) closeDelete();
  });

  dialog.querySelector("form").addEventListener("submit", function (event) {
    event.preventDefault();
    if (!pendingDelete) return;
    var target = pendingDelete;
    var confirm = dialog.querySelector('[data-action="confirm"]');
    confirm.disabled = true;
    post("/spaces/" + encodeURIComponent(target.id) + "/delete").then(function (data) {
      pendingDelete = null;
      dialog.close();
      var tr = rowById(target.id);
      if (tr) removeRow(tr);
      refreshEmpty();
      say("ok", data.message, true);
    }).catch(function (error) {
      confirm.disabled = false;
      var box = dialog.querySelector('[data-role="error"]');
      box.textContent = error.message + (error.detail ? " " + error.detail : "");
      box.hidden = false;
    });
  });

  // -- forms in rows: the trash icon opens the dialog; share and unshare go by fetch ------------

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var kind = form.getAttribute("data-js");
    if (kind === "delete") {
      event.preventDefault();
      var button = form.querySelector("button");
      openDelete(button.getAttribute("data-space-id"), button.getAttribute("data-space-name"), button);
    } else if (kind === "share") {
      event.preventDefault();
      var tr = form.closest("tr");
      var id = tr.getAttribute("data-space-id");
      var adding = !!form.querySelector('select[name="add"]');
      var body = new URLSearchParams(new FormData(form)); // before disabling: FormData skips disabled controls
      Array.prototype.forEach.call(form.querySelectorAll("button, select"), function (el) { el.disabled = true; });
      post(form.getAttribute("action"), body).then(function (data) {
        var fresh = fromHtml(data.row_html);
        var current = rowById(id);
        if (current && fresh) current.replaceWith(fresh);
        say("ok", data.message, false);
        var focusTarget = fresh && (fresh.querySelector(adding ? ".share-add select" : ".chip-remove") ||
          fresh.querySelector(".share-add select") || fresh.querySelector(".icon-button"));
        if (focusTarget) focusTarget.focus();
      }).catch(function (error) {
        Array.prototype.forEach.call(form.querySelectorAll("button, select"), function (el) { el.disabled = false; });
        say("error", error.message + (error.detail ? " " + error.detail : ""), true);
      });
    }
  });

  // -- keep the table current -----------------------------------------------------------------

  var fetchingRows = {};

  function renderRow(id, existing) {
    if (fetchingRows[id]) return;
    fetchingRows[id] = true;
    fetch("/web/spaces/" + encodeURIComponent(id) + "/row", { credentials: "same-origin", cache: "no-store" })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        var fresh = html && fromHtml(html);
        if (!fresh) return;
        var current = rowById(id);
        if (current) {
          if (!current.contains(document.activeElement)) current.replaceWith(fresh);
        } else if (!existing) {
          tbody.appendChild(fresh);
          refreshEmpty();
        }
      })
      .catch(function () {})
      .then(function () { delete fetchingRows[id]; });
  }

  function apply(data) {
    var seen = {};
    data.spaces.forEach(function (space) {
      seen[space.id] = true;
      var tr = rowById(space.id);
      if (!tr) {
        renderRow(space.id, false);
        return;
      }
      var status = tr.querySelector('[data-role="status"]');
      if (status.textContent !== space.state_label) {
        status.textContent = space.state_label;
        status.className = "status status-" + space.state;
        status.title = space.state_hint;
      }
      tr.querySelector('[data-role="platform"]').textContent = space.platform;
      var host = tr.querySelector('[data-role="hostname"]');
      host.textContent = space.hostname;
      host.hidden = !space.hostname;
      var seenAt = tr.querySelector('[data-role="last-seen"]');
      seenAt.textContent = space.last_seen_text;
      seenAt.setAttribute("datetime", space.last_seen_iso);
      seenAt.title = space.last_seen_title;
      if (tr.getAttribute("data-version") !== space.version) renderRow(space.id, true);
    });
    rows().forEach(function (tr) {
      var id = tr.getAttribute("data-space-id");
      if (seen[id]) return;
      var name = tr.getAttribute("data-space-name");
      var hadFocus = tr.contains(document.activeElement);
      removeRow(tr);
      if (pendingDelete && pendingDelete.id === id) closeDelete();
      say("ok", "The Space \u201c" + name + "\u201d was deleted.", hadFocus);
    });
    refreshEmpty(data.heading);
  }

  function poll() {
    if (document.hidden) return;
    fetch("/web/spaces.json", { credentials: "same-origin", cache: "no-store", headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (response.status === 401) {
          window.location.assign("/signin?expired");
          return null;
        }
        return response.ok ? response.json() : null;
      })
      .then(function (data) { if (data) apply(data); })
      .catch(function () {}); // the broker may be restarting: try again at the next tick
  }

  window.setInterval(poll, pollMs);
  document.addEventListener("visibilitychange", poll);
})();
