"""The `learnact` commands, one module each (registered in :mod:`.cli`, the console script): each parses its
options and prints, and leaves the work to the library (runs, reports, the sandbox). Options that more than one
command takes are declared once, in :mod:`.options`; exit statuses and the one-line errors are :mod:`.common`'s."""
