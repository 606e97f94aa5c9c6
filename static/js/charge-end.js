// When a charge ends while its page is open: the tab title changes, the phone vibrates, a banner shows.
// The live fragment (#session-live) is replaced by htmx polling; a MutationObserver sees the new one.
(function () {
  "use strict";
  var live = document.getElementById("session-live");
  var banner = document.getElementById("ended-banner");
  if (!live || !banner) { return; }
  var LIVE = ["pending", "charging"];
  var wasLive = LIVE.indexOf(live.getAttribute("data-session-state")) >= 0;

  function check() {
    var current = document.getElementById("session-live");
    if (!current || !wasLive) { return; }
    var state = current.getAttribute("data-session-state");
    if (LIVE.indexOf(state) >= 0) { return; }
    wasLive = false;
    var text = current.getAttribute("data-ended-text") || banner.getAttribute("data-text");
    document.title = text;
    banner.textContent = text;
    banner.hidden = false;
    banner.focus();
    if (navigator.vibrate) { navigator.vibrate([300, 150, 300]); }
  }

  new MutationObserver(check).observe(live.parentNode, { childList: true });
})();
