// Keyboard shortcuts (listed in the page's Shortcuts dialog).
export function initShortcuts(actions) {
  document.addEventListener("keydown", (event) => {
    if (!actions.active()) return;
    const typing = event.target.closest("input, textarea, select, .cm-editor");
    if (event.key === "Escape" && !document.querySelector("dialog[open]")) {
      actions.cancel();
      return;
    }
    if (event.altKey && !event.ctrlKey && !event.metaKey) {
      const action = { KeyN: actions.newChat, KeyR: actions.regenerate, KeyB: actions.toggleSidebar, KeyP: actions.togglePanel }[event.code];
      if (action) {
        event.preventDefault();
        action();
      }
      return;
    }
    if (event.key === "/" && !typing) {
      event.preventDefault();
      actions.focusPrompt();
    }
  });
}
