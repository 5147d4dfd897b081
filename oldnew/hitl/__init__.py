"""People in the loop: escalation records, answers that arrive while a run works, approvals."""
