"""Work done once per cluster, not once per worker: leases in PostgreSQL (`jobs.py`)."""
