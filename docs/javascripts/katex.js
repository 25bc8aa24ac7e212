// Render the math of pymdownx.arithmatex (generic mode: \( \) inline, \[ \] display) with the
// vendored KaTeX (docs/vendor/katex), on every page load including mkdocs-material's instant
// navigation; nothing is loaded from another server.
document$.subscribe(({ body }) => {
  renderMathInElement(body, {
    delimiters: [
      { left: "\\(", right: "\\)", display: false },
      { left: "\\[", right: "\\]", display: true },
    ],
    throwOnError: false,
  });
});
