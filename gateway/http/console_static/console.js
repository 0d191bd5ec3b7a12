// Review console: keeps the queue fresh without a reload. The page works without this file (Refresh link).
// Every POLL_MS it fetches the server-rendered, already escaped fragment named by #queue's data-poll and
// swaps it in. Signed out (401) or refused (403): reload, so the server shows the sign-in page.
(function () {
  "use strict";
  var POLL_MS = 2500;
  var box = document.getElementById("queue");
  if (!box || !window.fetch) {
    return;
  }
  var url = box.getAttribute("data-poll");
  document.documentElement.classList.add("live");

  function schedule() {
    window.setTimeout(poll, POLL_MS);
  }

  function poll() {
    if (document.hidden) {
      schedule();
      return;
    }
    fetch(url, { credentials: "same-origin", cache: "no-store", redirect: "error" })
      .then(function (response) {
        if (response.status === 401 || response.status === 403) {
          window.location.reload();
          return null;
        }
        return response.ok ? response.text() : null;
      })
      .then(function (fragment) {
        if (typeof fragment === "string") {
          box.innerHTML = fragment;
        }
      })
      .catch(function () { /* the next poll tries again */ })
      .then(schedule);
  }

  schedule();
})();
