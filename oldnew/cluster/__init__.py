"""Many machines: state in Postgres, tasks on workers."""
