"""Modal dialogs: confirmations and pickers."""
