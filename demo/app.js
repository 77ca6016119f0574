// Tidepool Supply Co.: demo storefront script.
//
// The browser talks to the session only through the gateway's reserved API:
//   GET    /__session  -> the client-readable keys ({} when there is no session)
//   POST   /__session  -> merge a JSON object (null deletes a key)
//   DELETE /__session  -> destroy the session (not used here: the "Forget me"
//                         form asks the shop, which answers X-Session-Destroy)
// The shop itself (the upstream) never sees these requests. Sign in, sign out
// and "Forget me" are plain HTML forms that POST to the shop.
(function () {
  "use strict";

  var API = "/__session";
  var body = document.body;
  var currency = body.dataset.currency || "USD";
  var session = {};

  var products = {};
  var order = [];
  document.querySelectorAll(".card[data-id]").forEach(function (card) {
    products[card.dataset.id] = { name: card.dataset.name, price: Number(card.dataset.price) };
    order.push(card.dataset.id);
  });

  var $ = function (id) { return document.getElementById(id); };

  // Same rules as the "money" template on the server side.
  function money(amt) {
    switch (currency) {
      case "GBP": return "£" + amt.toFixed(2);
      case "EUR": return amt.toFixed(2).replace(".", ",") + "\u00a0€";
      case "JPY": return "¥" + Math.round(amt).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
      default: return "$" + amt.toFixed(2);
    }
  }

  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  function cart() {
    var c = session.cart;
    return c && typeof c === "object" && !Array.isArray(c) ? c : {};
  }

  // ---- API ----------------------------------------------------------------

  function log(line, cls) {
    var el = $("api-log");
    el.innerHTML = (cls ? '<span class="' + cls + '">' : "") + esc(line) + (cls ? "</span>" : "");
  }

  function call(method, payload) {
    var opts = { method: method, credentials: "same-origin", headers: {} };
    if (payload !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(payload);
    }
    return fetch(API, opts).then(function (res) {
      return res.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = text; }
        var req = method + " " + API + (payload !== undefined ? " " + JSON.stringify(payload) : "");
        var resp = res.status + " " + res.statusText + (text ? "\n" + (typeof data === "string" ? data.trim() : JSON.stringify(data)) : "");
        log(req + "\n→ " + resp, res.ok ? "ok" : "err");
        return { ok: res.ok, status: res.status, data: data };
      });
    });
  }

  function load() {
    return fetch(API, { credentials: "same-origin", cache: "no-store" })
      .then(function (res) {
        if (!res.ok) throw new Error(res.status + " " + res.statusText);
        return res.json();
      })
      .then(function (data) { session = data || {}; showSession(); renderCart(); })
      .catch(function (err) {
        $("session-json").textContent = "GET " + API + " failed (" + err.message + ").\n" +
          "Browse the shop through the gateway, http://localhost:8080/, not :9080.";
      });
  }

  function write(patch) {
    return call("POST", patch).then(function (r) {
      if (r.ok && r.data && typeof r.data === "object") {
        session = r.data;
        showSession();
        renderCart();
        refreshUpstreamPanel();
      }
      return r;
    });
  }

  function showSession() {
    $("session-json").textContent = JSON.stringify(session, null, 1).replace(/\n\s*/g, " ").replace(/\{ /g, "{").replace(/ \}/g, "}");
  }

  // Re-render the server's view of this request, so the panel shows what the
  // shop receives now that the session changed.
  function refreshUpstreamPanel() {
    fetch(location.pathname, { credentials: "same-origin", cache: "no-store" })
      .then(function (res) { return res.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("upstream-panel");
        if (fresh) {
          $("upstream-panel").innerHTML = fresh.innerHTML;
          $("upstream-panel").querySelector("h3 .muted").textContent = "(just now)";
        }
      })
      .catch(function () {});
  }

  // ---- cart ---------------------------------------------------------------

  function renderCart() {
    var c = cart();
    var count = 0, total = 0, rows = [];
    order.forEach(function (id) {
      var q = Number(c[id]) || 0;
      if (q <= 0) return;
      var p = products[id];
      count += q;
      total += q * p.price;
      rows.push(
        '<li><span class="qty">' + q + "&times;</span>" +
        '<span class="name">' + esc(p.name) + "</span>" +
        '<span class="amt">' + money(q * p.price) + "</span>" +
        '<button class="dec" type="button" data-dec="' + esc(id) + '" aria-label="Remove one ' + esc(p.name) + '">&minus;</button></li>'
      );
    });
    $("cart-items").innerHTML = rows.length ? rows.join("") : '<li class="empty">Nothing here yet.</li>';
    $("cart-total").textContent = money(total);
    var badge = $("cart-count");
    if (badge.textContent !== String(count)) {
      badge.textContent = String(count);
      badge.classList.remove("bump");
      void badge.offsetWidth;
      badge.classList.add("bump");
    }
  }

  function setQty(id, q) {
    var next = {};
    var c = cart();
    Object.keys(c).forEach(function (k) { next[k] = c[k]; });
    if (q > 0) next[id] = q; else delete next[id];
    // An empty cart deletes the key (null means "delete" in a write).
    return write({ cart: Object.keys(next).length ? next : null });
  }

  // The cart is one key, written whole: start from the session as it is
  // now, not as it was when this page loaded, or an item added in another
  // tab since would be lost.
  function changeQty(id, delta) {
    return load().then(function () {
      return setQty(id, (Number(cart()[id]) || 0) + delta);
    });
  }

  document.addEventListener("click", function (ev) {
    var add = ev.target.closest("[data-add]");
    if (add) {
      var id = add.dataset.add;
      add.disabled = true;
      changeQty(id, 1).then(function (r) {
        add.disabled = false;
        if (r.ok) {
          add.classList.add("added");
          add.textContent = "Added ✓";
          $("cart").classList.remove("flash");
          void $("cart").offsetWidth;
          $("cart").classList.add("flash");
          setTimeout(function () { add.classList.remove("added"); add.textContent = "Add to cart"; }, 1200);
        }
      });
      return;
    }
    var dec = ev.target.closest("[data-dec]");
    if (dec) {
      changeQty(dec.dataset.dec, -1);
    }
  });

  $("cart-clear").addEventListener("click", function () { write({ cart: null }); });

  $("cart-button").addEventListener("click", function () {
    var el = $("cart");
    el.scrollIntoView({ behavior: "smooth", block: "start" });
    el.classList.remove("flash");
    void el.offsetWidth;
    el.classList.add("flash");
  });

  // ---- country --------------------------------------------------------------

  $("country").addEventListener("change", function (ev) {
    // The shop renders prices from the X-Session-Countrycode header, so write
    // the key, then reload to let the shop render the new currency.
    write({ countryCode: ev.target.value }).then(function (r) {
      if (r.ok) location.reload();
    });
  });

  // ---- try it -----------------------------------------------------------------

  $("forge").addEventListener("click", function () {
    // customerId is not in client_writable: the gateway answers 403 and
    // changes nothing. Only the shop (via X-Session-Set) can log someone in.
    call("POST", { customerId: "c_1" });
  });

  load();
})();
