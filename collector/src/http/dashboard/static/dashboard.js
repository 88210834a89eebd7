// transmissor dashboard: progressive enhancement only. Without it every
// page still works (filters and sorting are done by the server).
(function () {
  "use strict";
  var csrf = document.querySelector('meta[name="csrf-token"]');
  var token = csrf ? csrf.getAttribute("content") : "";

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": token, "Content-Type": "application/json" },
      body: body ? JSON.stringify(body) : "{}",
    });
  }

  // Hide rows not matching the text box while typing (the server-side
  // filter runs on submit).
  document.querySelectorAll("input[data-filter]").forEach(function (input) {
    var table = document.getElementById(input.getAttribute("data-filter"));
    var shown = document.getElementById("shown");
    if (!table) return;
    var rows = Array.prototype.slice.call(table.tBodies[0].rows);
    var keys = rows.map(function (tr) {
      var a = tr.cells[2] && tr.cells[2].querySelector("a");
      return a ? (a.textContent + " " + a.getAttribute("href").slice(3)).toLowerCase() : "";
    });
    var timer = null;
    function apply() {
      var q = input.value.trim().toLowerCase();
      var n = 0;
      for (var i = 0; i < rows.length; i++) {
        var hit = !q || keys[i].indexOf(q) !== -1;
        rows[i].hidden = !hit;
        if (hit) n++;
      }
      if (shown) shown.textContent = n.toLocaleString(document.documentElement.lang);
    }
    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(apply, 120);
    });
  });

  // Logout: a write, so it carries the CSRF token.
  document.querySelectorAll("button[data-logout]").forEach(function (b) {
    b.hidden = false;
    b.addEventListener("click", function () {
      post("/logout").then(function () { location.href = "/login"; });
    });
  });

  // Operator actions (run now, revoke) through the JSON API: the form's
  // named fields with a value make the body.
  document.querySelectorAll("form[data-post]").forEach(function (form) {
    form.hidden = false;
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var ask = form.getAttribute("data-confirm");
      if (ask && !confirm(ask)) return;
      var body = {};
      Array.prototype.forEach.call(form.elements, function (el) {
        if (el.name && el.value) body[el.name] = el.value;
      });
      var out = form.querySelector("output");
      post(form.getAttribute("data-post"), body)
        .then(function (r) {
          if (r.ok) {
            out.textContent = form.getAttribute("data-done");
            setTimeout(function () { location.reload(); }, 600);
            return;
          }
          return r.json().then(function (j) {
            out.textContent = form.getAttribute("data-failed") + ": " + ((j.error && j.error.message) || r.status);
          });
        })
        .catch(function (err) { out.textContent = form.getAttribute("data-failed") + ": " + err; });
    });
  });
})();
