// pair — the broker's web page, enhanced. Our own code, no dependencies. Every form here also works
// without this script (a POST, then a page); with it, changes happen in place, the Spaces page keeps
// itself current by polling /web/spaces.json, and it says so when it cannot reach the broker.
//
// Rules this file keeps:
// - Text from the broker only ever lands in textContent (or in <code> elements we create), and
//   rows come rendered by the broker's own templates.
// - A failed action says what did not happen and why, in our words: the browser's own error text
//   ("Failed to fetch") never reaches the page.
// - Focus is never dropped: a redrawn card gives focus to the twin of the control that had it
//   (data-focus-key), and dialogs hand focus back to their opener the same way.
(function () {
  "use strict";
  var GROUP = "group:";  // a group among the choices (views.GROUP): emails cannot hold a colon

  var CODE = /`([^`\n]+)`/g; // as broker/web/text.py's CODE
  var POLL_TIMEOUT_MS = 2000; // a poll that takes longer counts as "cannot reach the broker"
  var ACTION_TIMEOUT_MS = 15000;
  var RETRY_MS = [1000, 2000, 4000, 8000]; // then every 10 s, while the broker is away
  var RETRY_MAX_MS = 10000;
  var UNREACHABLE = "the broker could not be reached.";

  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var csrf = csrfMeta ? csrfMeta.getAttribute("content") : "";
  var announcer = document.getElementById("announcer");

  // -- words ----------------------------------------------------------------------------------

  // The broker's words, with `commands` as <code>, into `el` (as text.prose does on the server).
  function prose(el, text) {
    el.textContent = "";
    var pos = 0;
    text.replace(CODE, function (match, code, at) {
      el.appendChild(document.createTextNode(text.slice(pos, at).replace(/`/g, "")));
      var c = document.createElement("code");
      c.textContent = code;
      el.appendChild(c);
      pos = at + match.length;
      return match;
    });
    el.appendChild(document.createTextNode(text.slice(pos).replace(/`/g, "")));
  }

  var announceTimer = null;
  function announce(text) {
    if (!announcer) return;
    announcer.textContent = ""; // the same words twice are announced twice
    window.clearTimeout(announceTimer);
    announceTimer = window.setTimeout(function () { announcer.textContent = text; }, 100);
  }

  // "<what did not happen>: <why>." for a failed action.
  function failure(what, error) {
    if (error.unreachable) return what + ": " + UNREACHABLE;
    return what + ". " + error.message + (error.detail ? " " + error.detail : "");
  }

  // -- talking to the broker ------------------------------------------------------------------

  var connection = null; // the Spaces page's monitor, when there is one

  function unreachable() {
    return { unreachable: true };
  }

  // fetch, with a time limit; rejects with {unreachable: true} when the broker did not answer
  // (a gateway's 502/503/504 included), never with the browser's own error.
  function request(url, options, timeoutMs) {
    var controller = new AbortController();
    var timer = window.setTimeout(function () { controller.abort(); }, timeoutMs);
    var init = Object.assign({ credentials: "same-origin", cache: "no-store", signal: controller.signal }, options);
    return fetch(url, init).then(function (response) {
      window.clearTimeout(timer);
      if (response.status === 502 || response.status === 503 || response.status === 504) throw unreachable();
      if (connection) connection.heard();
      if (response.status === 401) {
        window.location.assign("/signin?expired");
        throw { message: "You are not signed in.", detail: "" };
      }
      return response;
    }, function () {
      window.clearTimeout(timer);
      if (connection) connection.lost();
      throw unreachable();
    });
  }

  function answer(response) {
    return response.json().then(function (data) { return data; }, function () {
      return { message: "The broker answered with an error (HTTP " + response.status + ").", detail: "" };
    });
  }

  // POST a form; resolves with the broker's JSON, rejects with {unreachable} or {message, detail}.
  function post(url, body) {
    return request(url, {
      method: "POST",
      headers: { "Accept": "application/json", "X-CSRF-Token": csrf },
      body: body || new URLSearchParams(),
    }, ACTION_TIMEOUT_MS).then(function (response) {
      return answer(response).then(function (data) {
        if (!response.ok) throw { message: data.message || "The broker refused the request.", detail: data.detail || "" };
        return data;
      });
    });
  }

  // -- copy buttons ---------------------------------------------------------------------------

  function legacyCopy(text) {
    var active = document.activeElement;
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "copy-buffer";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    area.remove();
    if (active && active.focus) active.focus({ preventScroll: true });
    return ok;
  }

  function copyText(text) {
    if (navigator.clipboard && navigator.clipboard.writeText) {
      return navigator.clipboard.writeText(text).then(function () { return true; }, function () { return legacyCopy(text); });
    }
    return Promise.resolve(legacyCopy(text));
  }

  function selectCommand(button) {
    var code = button.parentElement && button.parentElement.querySelector("code");
    if (!code) code = document.getElementById("space-token");
    if (!code) return;
    var range = document.createRange();
    range.selectNodeContents(code);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-copy]");
    if (!button) return;
    copyText(button.getAttribute("data-copy")).then(function (ok) {
      if (ok) {
        button.setAttribute("data-copied", "");
        window.setTimeout(function () { button.removeAttribute("data-copied"); }, 2000);
        announce("Copied.");
      } else {
        selectCommand(button);
        announce("Could not copy. The text is selected: press Control+C (or Command+C) to copy it.");
      }
    });
  });

  // -- the create page ------------------------------------------------------------------------

  var createSection = document.getElementById("create");
  if (createSection) {
    createSection.addEventListener("submit", function (event) {
      var form = event.target.closest('form[data-js="create"]');
      if (!form) return;
      event.preventDefault();
      var body = new URLSearchParams(new FormData(form));
      var button = form.querySelector('button[type="submit"]');
      var box = form.querySelector('[data-role="error"]');
      button.disabled = true;
      request("/spaces/new", {
        method: "POST",
        headers: { "Accept": "application/json", "X-CSRF-Token": csrf },
        body: body,
      }, ACTION_TIMEOUT_MS).then(function (response) {
        return answer(response).then(function (data) {
          if (!data.html) throw { message: data.message || "The broker refused the request.", detail: data.detail || "" };
          return data;
        });
      }).then(function (data) {
        createSection.innerHTML = data.html; // rendered by the broker's template, like the page itself
        if (data.ok) {
          createSection.setAttribute("aria-label", "The new Space");
          var aside = document.querySelector(".aside");
          if (aside) aside.remove();
          document.title = "Your new Space · pair";
        }
        var target = createSection.querySelector("[autofocus]");
        if (target) target.focus();
      }).catch(function (error) {
        button.disabled = false;
        prose(box, failure("The Space was not created", error));
        box.hidden = false;
        button.focus();
      });
    });
  }

  // -- the Spaces page ------------------------------------------------------------------------

  if (document.body.getAttribute("data-page") !== "spaces") return;

  var pollMs = parseInt(document.body.getAttribute("data-poll-ms"), 10) || 3000;
  var list = document.getElementById("spaces");
  var createTitle = document.getElementById("create-title");
  var count = document.getElementById("space-count");
  var flash = document.getElementById("flash");
  var deleteDialog = document.getElementById("delete-dialog");
  var shareDialog = document.getElementById("share-dialog");

  function say(kind, text, focus) {
    flash.className = "flash " + kind;
    prose(flash, text);
    flash.hidden = false;
    if (focus) flash.focus();
  }

  function cards() {
    return Array.prototype.slice.call(list.querySelectorAll("article[data-space-id]"));
  }

  function cardById(id) {
    return cards().filter(function (card) { return card.getAttribute("data-space-id") === id; })[0] || null;
  }

  function quoted(name) {
    return "\u201c" + name + "\u201d";
  }

  function fromHtml(html) {
    var template = document.createElement("template");
    template.innerHTML = html.trim();
    return template.content.querySelector("article[data-space-id]");
  }

  // -- focus that survives redraws --------------------------------------------------------------

  function focusKey(el) {
    var keyed = el && el.closest && el.closest("[data-focus-key]");
    return keyed ? keyed.getAttribute("data-focus-key") : "heading";
  }

  function findKeyed(card, keys) {
    for (var i = 0; i < keys.length; i++) {
      var found = Array.prototype.filter.call(card.querySelectorAll("[data-focus-key]"), function (el) {
        return el.getAttribute("data-focus-key") === keys[i] && !el.disabled;
      })[0];
      if (found) return found;
    }
    return card.querySelector('[data-focus-key="heading"]');
  }

  // Put `fresh` in place of `old`; if focus was inside `old`, it moves to the first of `keys`
  // (default: the twin of the focused control) found in `fresh` before `old` goes, so it is never
  // on <body> in between and stays visible.
  function swapCard(old, fresh, keys) {
    var active = document.activeElement;
    var had = old.contains(active);
    old.parentNode.insertBefore(fresh, old);
    if (had || keys) findKeyed(fresh, keys || [focusKey(active)]).focus({ preventScroll: true });
    old.remove();
  }

  // -- the delete dialog ------------------------------------------------------------------------

  var pendingDelete = null; // {id, name}

  function returnFocus(id, keys) {
    var card = cardById(id);
    if (card) findKeyed(card, keys).focus();
    else flash.focus();
  }

  function openDelete(card) {
    var id = card.getAttribute("data-space-id");
    var name = card.getAttribute("data-space-name");
    pendingDelete = { id: id, name: name };
    deleteDialog.querySelector('[data-role="name"]').textContent = name;
    deleteDialog.querySelector("form").setAttribute("action", "/spaces/" + encodeURIComponent(id) + "/delete");
    var error = deleteDialog.querySelector('[data-role="error"]');
    error.hidden = true;
    error.textContent = "";
    deleteDialog.querySelector('[data-action="confirm"]').disabled = false;
    deleteDialog.showModal();
    deleteDialog.querySelector('[data-action="cancel"]').focus();
  }

  function closeDelete() {
    var target = pendingDelete;
    pendingDelete = null;
    if (deleteDialog.open) deleteDialog.close();
    if (target) returnFocus(target.id, ["delete"]);
  }

  deleteDialog.querySelector('[data-action="cancel"]').addEventListener("click", closeDelete);
  deleteDialog.addEventListener("cancel", function (event) { // Escape
    event.preventDefault();
    closeDelete();
  });
  deleteDialog.addEventListener("click", function (event) { // a click on the backdrop
    if (event.target === deleteDialog) closeDelete();
  });

  deleteDialog.querySelector("form").addEventListener("submit", function (event) {
    event.preventDefault();
    if (!pendingDelete) return;
    var target = pendingDelete;
    var confirm = deleteDialog.querySelector('[data-action="confirm"]');
    confirm.disabled = true;
    post("/spaces/" + encodeURIComponent(target.id) + "/delete").then(function (data) {
      pendingDelete = null;
      say("ok", data.message, false);
      deleteDialog.close();
      flash.focus();
      var card = cardById(target.id);
      if (card) card.remove();
      poll();
    }).catch(function (error) {
      confirm.disabled = false;
      var box = deleteDialog.querySelector('[data-role="error"]');
      prose(box, failure("The Space was not deleted", error));
      box.hidden = false;
      confirm.focus();
    });
  });

  // -- the share dialog -------------------------------------------------------------------------

  var pendingShare = null; // {id, name}
  var shareConfirm = shareDialog.querySelector('[data-action="confirm"]');
  var shareChoices = shareDialog.querySelector('[data-role="choices"]');
  var shareError = shareDialog.querySelector('[data-role="error"]');

  function chosen() {
    var checked = shareChoices.querySelector("input:checked");
    return checked ? checked.value : "";
  }

  function openShare(card, form) {
    var id = card.getAttribute("data-space-id");
    var name = card.getAttribute("data-space-name");
    pendingShare = { id: id, name: name };
    shareDialog.querySelector('[data-role="name"]').textContent = name;
    shareDialog.querySelector("form").setAttribute("action", "/spaces/" + encodeURIComponent(id) + "/shares");
    shareChoices.textContent = "";
    JSON.parse(form.getAttribute("data-can-add") || "[]").forEach(function (email) {
      var label = document.createElement("label");
      label.className = "choice";
      var input = document.createElement("input");
      input.type = "radio";
      input.name = "add";
      input.value = email;
      var text = document.createElement("span");
      text.textContent = email.indexOf(GROUP) === 0 ? "group " + email.slice(GROUP.length) : email;  // views.who
      label.appendChild(input);
      label.appendChild(document.createTextNode(" "));
      label.appendChild(text);
      shareChoices.appendChild(label);
    });
    shareError.hidden = true;
    shareError.textContent = "";
    shareConfirm.disabled = false;
    shareConfirm.textContent = "Share";
    shareDialog.showModal();
    var first = shareChoices.querySelector("input");
    if (first) first.focus();
  }

  function closeShare(keys) {
    var target = pendingShare;
    pendingShare = null;
    if (shareDialog.open) shareDialog.close();
    if (target) returnFocus(target.id, keys || ["share"]);
  }

  shareChoices.addEventListener("change", function () {
    var email = chosen();
    shareConfirm.textContent = email ? "Share with " + (email.indexOf(GROUP) === 0 ? "group " + email.slice(GROUP.length) : email) : "Share";
    shareError.hidden = true;
  });
  shareDialog.querySelector('[data-action="cancel"]').addEventListener("click", function () { closeShare(); });
  shareDialog.addEventListener("cancel", function (event) {
    event.preventDefault();
    closeShare();
  });
  shareDialog.addEventListener("click", function (event) {
    if (event.target === shareDialog) closeShare();
  });

  shareDialog.querySelector("form").addEventListener("submit", function (event) {
    event.preventDefault();
    if (!pendingShare) return;
    var target = pendingShare;
    var email = chosen();
    if (!email) {
      shareError.textContent = "Choose a teammate first.";
      shareError.hidden = false;
      var first = shareChoices.querySelector("input");
      if (first) first.focus();
      return;
    }
    shareConfirm.disabled = true;
    var body = new URLSearchParams({ add: email });
    post("/spaces/" + encodeURIComponent(target.id) + "/shares", body).then(function (data) {
      pendingShare = null;
      shareDialog.close();
      var fresh = fromHtml(data.row_html);
      var card = cardById(target.id);
      if (card && fresh) swapCard(card, fresh, ["share", "unshare:" + email]);
      else returnFocus(target.id, ["share"]);
      say("ok", data.message, false);
    }).catch(function (error) {
      shareConfirm.disabled = false;
      prose(shareError, failure(quoted(target.name) + " was not shared with " + email, error));
      shareError.hidden = false;
      shareConfirm.focus();
    });
  });

  // -- forms in the cards ---------------------------------------------------------------------

  list.addEventListener("submit", function (event) {
    var form = event.target;
    var kind = form.getAttribute("data-js");
    var card = form.closest("article[data-space-id]");
    if (!card) return;
    if (kind === "delete") {
      event.preventDefault();
      openDelete(card);
    } else if (kind === "share") {
      event.preventDefault();
      openShare(card, form);
    } else if (kind === "unshare") {
      event.preventDefault();
      unshare(card, form);
    }
  });

  function unshare(card, form) {
    var id = card.getAttribute("data-space-id");
    var name = card.getAttribute("data-space-name");
    var email = form.querySelector('input[name="remove"]').value;
    var body = new URLSearchParams(new FormData(form)); // before disabling: FormData skips disabled controls
    var button = form.querySelector("button");
    var keys = Array.prototype.map.call(card.querySelectorAll('.chip-remove'), focusKey);
    var at = keys.indexOf("unshare:" + email);
    var after = keys.slice(at + 1).concat(keys.slice(0, Math.max(at, 0)).reverse(), ["share"]);
    button.disabled = true;
    post(form.getAttribute("action"), body).then(function (data) {
      var fresh = fromHtml(data.row_html);
      var current = cardById(id);
      if (current && fresh) swapCard(current, fresh, current.contains(document.activeElement) ? after : null);
      say("ok", data.message, false);
    }).catch(function (error) {
      button.disabled = false;
      say("error", failure(quoted(name) + " is still shared with " + email, error), true);
    });
  }

  // -- keep the page current ------------------------------------------------------------------

  var order = [];
  var fetchingCards = {};

  function place(fresh, id) {
    var at = order.indexOf(id);
    for (var i = at + 1; i < order.length; i++) {
      var next = cardById(order[i]);
      if (next) {
        list.insertBefore(fresh, next);
        return;
      }
    }
    list.appendChild(fresh);
  }

  function renderCard(id) {
    if (fetchingCards[id]) return;
    fetchingCards[id] = true;
    request("/web/spaces/" + encodeURIComponent(id) + "/row", {}, ACTION_TIMEOUT_MS)
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        var fresh = html && fromHtml(html);
        if (!fresh || order.indexOf(id) < 0) return;
        var current = cardById(id);
        if (current) {
          swapCard(current, fresh, null);
        } else {
          place(fresh, id);
          showList();
          announce("The Space " + quoted(fresh.getAttribute("data-space-name")) + " is on your list.");
        }
      })
      .catch(function () {}) // the monitor says the broker is away; the next poll tries again
      .then(function () { delete fetchingCards[id]; });
  }

  function showList() {
    var any = cards().length > 0;
    list.hidden = !any;
    var title = any ? "Create a Space" : "Create your first Space";
    if (createTitle.textContent !== title) createTitle.textContent = title;
  }

  function setText(el, text) {
    if (el.textContent !== text) el.textContent = text;
  }

  function renderHere(card, space) {
    var here = card.querySelector('[data-role="here"]');
    var signature = JSON.stringify(space.here);
    if (here.getAttribute("data-signature") === signature) return;
    here.setAttribute("data-signature", signature);
    here.textContent = "";
    if (!space.here.length) {
      var nobody = document.createElement("li");
      nobody.className = "sub";
      nobody.textContent = "Nobody is connected.";
      here.appendChild(nobody);
      return;
    }
    space.here.forEach(function (visitor) {
      var li = document.createElement("li");
      var email = document.createElement("span");
      email.className = "who-email";
      email.textContent = visitor.email;
      var sub = document.createElement("span");
      sub.className = "sub";
      var time = document.createElement("time");
      time.setAttribute("datetime", visitor.since_iso);
      time.title = visitor.since_title;
      time.textContent = visitor.since_text;
      sub.appendChild(document.createTextNode("connected "));
      sub.appendChild(time);
      sub.appendChild(document.createTextNode(visitor.more));
      li.appendChild(email);
      li.appendChild(document.createTextNode(" "));
      li.appendChild(sub);
      here.appendChild(li);
    });
  }

  function update(card, space, news) {
    var status = card.querySelector('[data-role="status"]');
    if (status.textContent !== space.state_label) {
      status.textContent = space.state_label;
      status.className = "status status-" + space.status_class;
      news.push(quoted(space.name) + " is now " + space.state_label + ".");
    }
    setText(card.querySelector('[data-role="status-hint"]'), space.state_hint);
    setText(card.querySelector('[data-role="platform"]'), space.platform);
    var host = card.querySelector('[data-role="hostname"]');
    setText(host, space.hostname);
    host.hidden = !space.hostname;
    var seen = card.querySelector('[data-role="last-seen"]');
    setText(seen, space.last_seen_text);
    seen.setAttribute("datetime", space.last_seen_iso);
    seen.title = space.last_seen_title;
    renderHere(card, space);
    if (card.getAttribute("data-version") !== space.version) renderCard(space.id);
  }

  function apply(data) {
    var seen = {};
    var news = [];
    order = data.spaces.map(function (space) { return space.id; });
    data.spaces.forEach(function (space) {
      seen[space.id] = true;
      var card = cardById(space.id);
      if (card) update(card, space, news);
      else renderCard(space.id);
    });
    cards().forEach(function (card) {
      var id = card.getAttribute("data-space-id");
      if (seen[id]) return;
      var name = card.getAttribute("data-space-name");
      var hadFocus = card.contains(document.activeElement);
      var dialogWasOpen = false;
      if (pendingDelete && pendingDelete.id === id) {
        pendingDelete = null;
        deleteDialog.close();
        dialogWasOpen = true;
      }
      if (pendingShare && pendingShare.id === id) {
        pendingShare = null;
        shareDialog.close();
        dialogWasOpen = true;
      }
      say("ok", "The Space " + quoted(name) + " was deleted.", hadFocus || dialogWasOpen);
      card.remove();
    });
    setText(count, data.heading);
    showList();
    if (news.length) announce(news.join(" "));
  }

  // -- the broker's reachability ----------------------------------------------------------------

  var banner = document.getElementById("connection");
  var bannerText = document.getElementById("connection-text");
  var bannerMore = banner.querySelector('[data-role="more"]');
  var bannerNext = banner.querySelector('[data-role="next"]');
  var pollTimer = null;
  var countdown = null;
  var failures = 0;
  var lastHeard = new Date();
  var clearBack = null;

  function clock(date) {
    return date.toTimeString().slice(0, 8);
  }

  connection = {
    away: false,
    lost: function () {
      if (this.away) return;
      this.away = true;
      window.clearTimeout(clearBack);
      banner.setAttribute("data-state", "lost");
      list.setAttribute("data-stale", "");
      bannerText.textContent = "The page cannot reach the broker (last heard from it at " + clock(lastHeard) +
        "). What it shows may be out of date; it keeps trying.";
      bannerMore.hidden = false;
    },
    heard: function () {
      lastHeard = new Date();
      if (!this.away) return;
      this.away = false;
      failures = 0;
      window.clearInterval(countdown);
      banner.setAttribute("data-state", "back");
      list.removeAttribute("data-stale");
      if (bannerMore.contains(document.activeElement)) document.getElementById("spaces-title").focus();
      bannerMore.hidden = true;
      bannerText.textContent = "The broker is back; the page is up to date again.";
      clearBack = window.setTimeout(function () {
        if (connection.away) return;
        banner.setAttribute("data-state", "ok");
        bannerText.textContent = "";
      }, 10000);
    },
  };

  function schedule(ms) {
    window.clearTimeout(pollTimer);
    pollTimer = window.setTimeout(poll, ms);
  }

  function retryIn(ms) {
    var due = Date.now() + ms;
    window.clearInterval(countdown);
    function tick() {
      var left = Math.max(0, Math.ceil((due - Date.now()) / 1000));
      bannerNext.textContent = left > 0 ? "Next try in " + left + " s." : "Trying now…";
    }
    tick();
    countdown = window.setInterval(tick, 1000);
    schedule(ms);
  }

  function poll() {
    window.clearTimeout(pollTimer);
    if (document.hidden) return; // visibilitychange polls again
    request("/web/spaces.json", { headers: { "Accept": "application/json" } }, POLL_TIMEOUT_MS)
      .then(function (response) {
        if (!response.ok) throw { message: "HTTP " + response.status };
        return response.json();
      })
      .then(function (data) {
        failures = 0;
        window.clearInterval(countdown);
        apply(data);
        schedule(pollMs);
      })
      .catch(function (error) {
        if (!error || !error.unreachable) {
          schedule(pollMs); // the broker answered, but not with the list: ask again at the next tick
          return;
        }
        var base = RETRY_MS[Math.min(failures, RETRY_MS.length)] || RETRY_MAX_MS;
        failures += 1;
        retryIn(Math.round(base * (0.8 + Math.random() * 0.4)));
      });
  }

  banner.querySelector('[data-action="retry"]').addEventListener("click", function () {
    bannerNext.textContent = "Trying now…";
    poll();
  });
  document.addEventListener("visibilitychange", function () { if (!document.hidden) poll(); });
  schedule(pollMs);
})();
