// A running saga's page follows its transitions: the server sends the page's live part again
// (server-sent events) whenever the saga's history grows, and stops once the saga is final.
"use strict";
(function () {
  function follow() {
    var live = document.getElementById("live");
    if (!live || live.dataset.final === "true" || !window.EventSource) return;
    var url = "/sagas/" + live.dataset.saga + "/events?after=" + live.dataset.seq;
    var source = new EventSource(url);
    source.addEventListener("update", function (event) {
      var current = document.getElementById("live");
      var next = document.createElement("div");
      next.innerHTML = event.data;
      var fresh = next.firstElementChild;
      if (!current || !fresh) return;
      current.replaceWith(fresh);
      var note = document.getElementById("live-note");
      if (note) note.textContent = "updated " + new Date().toLocaleTimeString();
      if (fresh.dataset.final === "true") source.close();
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", follow);
  } else {
    follow();
  }
})();
