// Numbers in results tables on one line; a cell "value (reference)" on two,
// the reference under the value, so that wide tables fit the page.
document.addEventListener('DOMContentLoaded', () => {
  const numeric = /^[\s\d.,±+\-−–()%x×\/<>=~≈*]*\d[\s\d.,±+\-−–()%x×\/<>=~≈*]*$|^n\/a$/;
  document.querySelectorAll('article table td').forEach((td) => {
    const text = td.textContent.trim();
    if (!numeric.test(text)) return;
    td.classList.add('numeric');
    // The element holding the text: the cell, or its one paragraph.
    const host = td.children.length === 0 ? td :
        (td.children.length === 1 && td.firstElementChild.children.length
         === 0 ? td.firstElementChild : null);
    const split = text.match(/^(.*\S)\s+(\(.*\))$/);
    if (split && host) {
      host.textContent = '';
      for (const part of split.slice(1)) {
        const line = document.createElement('span');
        line.className = 'numeric-line';
        line.textContent = part;
        host.appendChild(line);
      }
    }
  });
});
