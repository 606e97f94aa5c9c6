// Small page actions without inline handlers (the CSP forbids them):
//   <button data-print>                      prints the page;
//   <button data-copy="#id" data-copied="…"> copies an input's value (or an element's text);
//   a form field with an error drops the error (and its line in the summary) once it is changed.
"use strict";

document.addEventListener("click", (event) => {
  if (event.target.closest("[data-print]")) {
    window.print();
    return;
  }
  const button = event.target.closest("[data-copy]");
  if (!button) {
    return;
  }
  const source = document.querySelector(button.dataset.copy);
  if (!source) {
    return;
  }
  const text = "value" in source ? source.value : source.textContent;
  const done = () => {
    button.textContent = button.dataset.copied || button.textContent;
  };
  const fallback = () => {
    if (source.select) {
      source.select();
    }
    try {
      if (document.execCommand("copy")) {
        done();
      }
    } catch (error) {
      // the text stays selected for the person to copy
    }
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done, fallback);
  } else {
    fallback();
  }
});

function clearFieldError(event) {
  const field = event.target.closest(".field.has-error");
  if (!field) {
    return;
  }
  field.classList.remove("has-error");
  field.querySelectorAll(".error").forEach((line) => line.remove());
  const input = field.querySelector("[id]");
  const summary = document.querySelector(".error-summary");
  if (input && summary) {
    summary.querySelectorAll(`a[href="#${CSS.escape(input.id)}"]`).forEach((link) => link.closest("li").remove());
    if (!summary.querySelector("li")) {
      summary.remove();
    }
  }
}

document.addEventListener("input", clearFieldError);
document.addEventListener("change", clearFieldError);
