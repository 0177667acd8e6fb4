// pair — the terminal page: xterm.js (vendored, MIT) on one terminal stream of the broker.
// The protocol is pair/api/terminal.py's: binary frames are terminal bytes both ways, text frames
// are JSON messages (hello, attached, role, size, error, exit, closed from the agent; resize and
// grant from us). Everything comes from the page's data attributes; there is no inline script.
//
// Copy and paste: select with the mouse, then Ctrl+Shift+C (Cmd+C on a Mac) copies the
// selection; Ctrl+Shift+V, Cmd+V or Shift+Insert paste (the browser's paste, which xterm.js sends
// as a bracketed paste). Plain Ctrl+C stays the terminal's interrupt.
(function () {
  "use strict";

  var body = document.body;
  if (body.getAttribute("data-page") !== "terminal") return;

  // xterm.js sizes its rows and colours through <style> elements it creates; the page's CSP
  // admits those only with this response's nonce, which the server put on this script element.
  var nonce = document.currentScript ? document.currentScript.nonce : "";
  if (nonce) {
    var createElement = document.createElement;
    document.createElement = function (name, options) {
      var element = createElement.call(document, name, options);
      if (String(name).toLowerCase() === "style") element.setAttribute("nonce", nonce);
      return element;
    };
  }

  var MAX_FRAME = 16 * 1024; // input frames stay well below the protocol's 64 KiB limit
  var spaceName = body.getAttribute("data-space-name") || "";
  var wsPath = body.getAttribute("data-ws-url") || "";
  var params = new URLSearchParams(window.location.search);
  var terminalId = body.getAttribute("data-terminal-id") || params.get("join") || "";
  var readOnly = body.getAttribute("data-read-only") === "true" || params.get("read_only") === "1";

  var startedByEl = document.getElementById("term-started-by");
  var roleEl = document.getElementById("term-role");
  var peopleEl = document.getElementById("term-people");
  var statusEl = document.getElementById("term-status");
  var banner = document.getElementById("term-banner");
  var bannerText = banner.querySelector('[data-role="text"]');
  var bannerNew = banner.querySelector('[data-role="new"]');
  var bannerRetry = banner.querySelector('[data-role="retry"]');

  var term = new window.Terminal({
    cursorBlink: true,
    fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
    fontSize: 14,
    lineHeight: 1.15, // room for underscores below the baseline (DOM renderer)
    scrollback: 5000,
    theme: { background: "#111418" },
  });
  var fit = new window.FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(document.getElementById("terminal"));
  fit.fit();
  term.focus();

  var encoder = new TextEncoder();
  var socket = null;
  var attempt = 0; // failed connections in a row, for the backoff
  var retryTimer = null;
  var finished = false; // the terminal exited or was closed for good: no reconnecting
  // Which closes are worth joining again after, and how long to wait: the CLI's rule, from the
  // page (pair.api.terminal.reconnect_rule), so both decide alike.
  var rule = JSON.parse(document.body.dataset.reconnect);
  function transient(code) {
    return rule.transient.indexOf(code) !== -1 ||
      (code >= rule.transient_range[0] && code <= rule.transient_range[1]);
  }
  var me = "";
  var startedBy = "";
  var role = "viewer";

  function setStatus(text) {
    statusEl.textContent = text;
  }

  function showBanner(text, kind, offerNew) {
    bannerText.textContent = text;
    banner.className = "term-banner" + (kind ? " " + kind : "");
    bannerNew.hidden = !offerNew;
    bannerRetry.hidden = offerNew;
    banner.hidden = false;
  }

  function wsUrl() {
    // Only a path on this origin: the page never connects anywhere else.
    if (wsPath.charAt(0) !== "/" || wsPath.charAt(1) === "/") throw new Error("bad data-ws-url");
    var url = new URL(wsPath, window.location.href);
    url.protocol = window.location.protocol === "https:" ? "wss:" : "ws:";
    if (terminalId) url.searchParams.set("join", terminalId);
    if (readOnly) url.searchParams.set("read_only", "1");
    url.searchParams.set("cols", String(term.cols));
    url.searchParams.set("rows", String(term.rows));
    return url.toString();
  }

  function send(data) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(data);
  }

  function sendMessage(message) {
    send(JSON.stringify(message));
  }

  function sendInput(bytes) {
    if (role !== "driver") return; // the agent drops a viewer's input anyway
    for (var start = 0; start < bytes.length; start += MAX_FRAME) {
      send(bytes.subarray(start, start + MAX_FRAME));
    }
  }

  function applyRole(newRole) {
    role = newRole;
    roleEl.textContent = role === "driver" ? "driver (typing)" : "viewer (read-only)";
    term.options.disableStdin = role !== "driver";
    if (role === "driver") {
      fit.fit();
      sendMessage({ type: "resize", cols: term.cols, rows: term.rows });
    }
  }

  function renderPeople(attached) {
    // One entry per person, however many tabs or terminals they have attached (a driver if any
    // of them drives), so the starter gets one button per person.
    var people = [];
    var byEmail = {};
    attached.forEach(function (person) {
      var seen = byEmail[person.email];
      if (!seen) {
        seen = byEmail[person.email] = { email: person.email, role: person.role, count: 0 };
        people.push(seen);
      }
      seen.count += 1;
      if (person.role === "driver") seen.role = "driver";
    });
    peopleEl.textContent = "";
    people.forEach(function (person) {
      var item = document.createElement("span");
      item.className = "term-person";
      item.textContent = person.email + (person.email === me ? " (you)" : "") + " · " + person.role +
        (person.count > 1 ? " ×" + person.count : "");
      if (me === startedBy && person.email !== startedBy) {
        var button = document.createElement("button");
        button.type = "button";
        button.className = "term-button";
        var next = person.role === "driver" ? "viewer" : "driver";
        button.textContent = next === "driver" ? "Let type" : "Take back";
        button.setAttribute("aria-label", (next === "driver" ? "Let " : "Stop ") + person.email +
          (next === "driver" ? " type" : " typing"));
        button.addEventListener("click", function () {
          sendMessage({ type: "grant", email: person.email, role: next });
        });
        item.appendChild(button);
      }
      peopleEl.appendChild(item);
    });
  }

  function onMessage(message) {
    switch (message.type) {
      case "hello":
        terminalId = message.terminal_id;
        me = message.email;
        startedBy = message.started_by;
        startedByEl.textContent = startedBy;
        term.reset(); // the scrollback follows: a reconnect redraws rather than repeats
        if (message.role !== "driver") term.resize(message.cols, message.rows);
        applyRole(message.role);
        params.set("join", terminalId);
        window.history.replaceState(null, "", window.location.pathname + "?" + params.toString());
        bannerNew.href = window.location.pathname;
        banner.hidden = true;
        setStatus("Connected");
        break;
      case "attached":
        renderPeople(message.people);
        break;
      case "role":
        applyRole(message.role);
        setStatus(role === "driver" ? startedBy + " let you type." : startedBy + " took back the keyboard.");
        break;
      case "size":
        if (role !== "driver") term.resize(message.cols, message.rows);
        break;
      case "error":
        setStatus(message.message);
        break;
      case "exit":
        finished = true;
        showBanner("The shell exited" + (message.signal ? " (" + message.signal + ")" : "") +
          " with status " + message.status + ".", "info", true);
        setStatus("Ended");
        break;
      case "closed":
        if (rule.rejoinable.indexOf(message.code) !== -1) {
          setStatus(message.reason); // catch up from the scrollback
          break;
        }
        finished = true;
        showBanner(message.reason, message.code === "ended" ? "info" : "", true);
        setStatus("Ended");
        break;
      default:
        break; // a newer agent's message: nothing to do with it here
    }
  }

  function connect() {
    retryTimer = null;
    setStatus(attempt ? "Reconnecting…" : "Connecting…");
    var ws = new WebSocket(wsUrl());
    ws.binaryType = "arraybuffer";
    socket = ws;
    ws.onopen = function () {
      attempt = 0;
    };
    ws.onmessage = function (event) {
      if (typeof event.data === "string") {
        var message;
        try {
          message = JSON.parse(event.data);
        } catch (error) {
          return;
        }
        onMessage(message);
      } else {
        term.write(new Uint8Array(event.data));
      }
    };
    ws.onclose = function (event) {
      if (socket === ws) socket = null;
      if (finished) return;
      if (!transient(event.code)) {
        finished = true; // ended for good (refused, revoked, no such terminal): retrying would not help
        showBanner(event.reason || "The broker refused this terminal.", "", true);
        setStatus("Ended");
        return;
      }
      attempt += 1;
      // Exponential backoff with equal jitter: 0.5 s, 1 s, 2 s… up to 10 s, each times 0.5-1.
      var delay = Math.min(rule.backoff_max_ms, rule.backoff_first_ms * Math.pow(2, Math.min(attempt - 1, 16))) *
        (0.5 + Math.random() / 2);
      setStatus("Disconnected; reconnecting in " + Math.ceil(delay / 1000) + " s…");
      showBanner("The connection dropped. The shell keeps running in the Space.", "info", false);
      retryTimer = window.setTimeout(connect, delay);
    };
  }

  bannerRetry.addEventListener("click", function () {
    if (retryTimer !== null) window.clearTimeout(retryTimer);
    attempt = 0;
    connect();
  });

  term.onData(function (data) {
    sendInput(encoder.encode(data));
  });
  term.onBinary(function (data) {
    var bytes = new Uint8Array(data.length);
    for (var i = 0; i < data.length; i += 1) bytes[i] = data.charCodeAt(i) & 255;
    sendInput(bytes);
  });
  term.onResize(function (size) {
    if (role === "driver") sendMessage({ type: "resize", cols: size.cols, rows: size.rows });
  });
  term.attachCustomKeyEventHandler(function (event) {
    if (event.type !== "keydown") return true;
    var key = event.key.toLowerCase();
    if (event.ctrlKey && event.shiftKey && key === "c") {
      if (term.hasSelection()) document.execCommand("copy"); // xterm.js fills the clipboard
      event.preventDefault();
      return false;
    }
    if (event.ctrlKey && event.shiftKey && key === "v") return false; // the browser pastes
    return true;
  });

  var pendingFit = false;
  window.addEventListener("resize", function () {
    if (pendingFit || role !== "driver") return;
    pendingFit = true;
    window.requestAnimationFrame(function () {
      pendingFit = false;
      fit.fit(); // onResize sends the new size
    });
  });

  document.title = spaceName + " · Terminal · pair";
  connect();
})();
