// Tidepool Supply Co.: demo storefront script (an ES module).
//
// The browser talks to the session only through the gateway's reserved API,
// with the browser client that the gateway itself serves at
// /__session/client.js:
//   get()        GET    /__session -> the client-readable keys ({} without a session)
//   set(patch)   POST   /__session -> merge a JSON object (null deletes a key)
//   update(fn)   GET, then POST with If-Match: the cart, which is read, changed
//                and written whole, never loses an item added in another tab
//   subscribe()  another tab changed the session: show it here too
// The shop itself (the upstream) never sees these requests. Sign in, sign out
// and "Forget me" are plain HTML forms that POST to the shop.
const API = "/__session";
const $ = function (id) { return document.getElementById(id); };

let client;
try {
  client = await import(API + "/client.js");
} catch (err) {
  $("session-json").textContent = "Loading " + API + "/client.js failed (" + err.message + ").\n" +
    "Browse the shop through the gateway, http://localhost:8080/, not :9080.";
  throw err;
}

var body = document.body;
var currency = body.dataset.currency || "USD";
var session = {};

var products = {};
var order = [];
document.querySelectorAll(".card[data-id]").forEach(function (card) {
  products[card.dataset.id] = { name: card.dataset.name, price: Number(card.dataset.price) };
  order.push(card.dataset.id);
});

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

// Shows one write in panel 3: what was sent, what the API answered.
// patch() is the patch sent, known once the write is done (update()
// computes it from the session it reads).
function logWrite(what, patch, p) {
  var req = function () { return what + ": POST " + API + " " + JSON.stringify(patch()); };
  return p.then(function (data) {
    log(req() + "\n→ 200\n" + JSON.stringify(data), "ok");
    session = data;
    showSession();
    renderCart();
    refreshUpstreamPanel();
    return { ok: true, status: 200, data: data };
  }, function (err) {
    log(req() + "\n→ " + (err.status || "failed") + "\n" + JSON.stringify({ error: err.message }), "err");
    return { ok: false, status: err.status, data: null };
  });
}

function load() {
  return client.get()
    .then(function (data) { session = data; showSession(); renderCart(); })
    .catch(function (err) {
      $("session-json").textContent = "GET " + API + " failed (" + err.message + ").\n" +
        "Browse the shop through the gateway, http://localhost:8080/, not :9080.";
    });
}

function write(patch) {
  return logWrite("set()", function () { return patch; }, client.set(patch));
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

// The cart is one key, written whole. update() reads the session as it
// is now (not as it was when this page loaded), and writes only if
// nothing changed it since (If-Match); if something did (another tab
// added an item), it reads again and recomputes. So no item is lost.
function changeQty(id, delta) {
  var sent = null;
  return logWrite("update()", function () { return sent; }, client.update(function (current) {
    var c = current.cart && typeof current.cart === "object" && !Array.isArray(current.cart) ? current.cart : {};
    var next = {};
    Object.keys(c).forEach(function (k) { next[k] = c[k]; });
    var q = (Number(next[id]) || 0) + delta;
    if (q > 0) next[id] = q; else delete next[id];
    // An empty cart deletes the key (null means "delete" in a write).
    sent = { cart: Object.keys(next).length ? next : null };
    return sent;
  }));
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
  write({ customerId: "c_1" });
});

// Another tab changed the session (through the client): show it here.
client.subscribe(function (data) {
  session = data || {};
  showSession();
  renderCart();
});

load();
