"""Reports and audit: the paper's table from run directories (:mod:`.table`, read by :mod:`.runs`, written by
:mod:`.render`, :mod:`.plots` and :mod:`.output`) and the audit of a learned action library (:mod:`.audit`,
shown by :mod:`.audit_terminal` and :mod:`.audit_html`). Every string they show came from a model or a run and
is escaped for where it goes."""
