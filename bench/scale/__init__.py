"""`make bench-scale` (`python -m bench.scale`), by role: `generate` makes the cluster and the
InferencePools, `drive` runs the operator on them and acts on the cluster (failover, soak),
`probes` reads the figures, `__main__` is the command line."""
