// Follows a running step's log: the page already shows its tail (it reads without
// JavaScript); this appends what the step writes next, from the Server-Sent Events stream.
(function () {
  "use strict";
  var log = document.getElementById("log");
  if (!log || log.getAttribute("data-live") !== "true" || !window.EventSource) {
    return;
  }
  var source = new EventSource(log.getAttribute("data-src"));
  source.addEventListener("log", function (e) {
    var stick = window.innerHeight + window.scrollY >= document.body.offsetHeight - 4;
    log.appendChild(document.createTextNode(JSON.parse(e.data).text));
    if (stick) {
      window.scrollTo(0, document.body.scrollHeight);
    }
  });
  // The log was replaced (the step ended and its log was written whole, or a retry began):
  // the text that follows is the new log from its start.
  source.addEventListener("reset", function () {
    log.textContent = "";
  });
  source.addEventListener("end", function () {
    source.close();
    log.setAttribute("data-live", "false");
  });
})();
