// Copy buttons: copy the value in data-copy (a URL, never a token) and say so.
(function () {
  "use strict";

  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "visually-hidden";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    document.body.removeChild(area);
    return ok ? Promise.resolve() : Promise.reject(new Error("copy failed"));
  }

  function copy(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).catch(function () { return fallbackCopy(text); });
    }
    return fallbackCopy(text);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) { return; }
    var label = button.textContent;
    copy(button.getAttribute("data-copy")).then(function () {
      button.textContent = "Copied";
      button.classList.add("is-copied");
    }, function () {
      button.textContent = "Select and copy";
    }).then(function () {
      window.setTimeout(function () {
        button.textContent = label;
        button.classList.remove("is-copied");
      }, 1800);
    });
  });
})();

// After a submit that failed, move focus to the error summary so that keyboard and screen
// reader users land on what went wrong; its links take them to each field.
(function () {
  "use strict";
  var summary = document.getElementById("error-summary");
  if (summary) { summary.focus(); }
})();

// The error summary's links move focus to their field (a fragment link alone only scrolls).
document.addEventListener("click", function (event) {
  "use strict";
  var link = event.target.closest(".error-summary a[href^='#']");
  if (!link) { return; }
  var field = document.getElementById(link.getAttribute("href").slice(1));
  if (!field) { return; }
  event.preventDefault();
  field.focus();
  field.scrollIntoView({block: "center"});
});
